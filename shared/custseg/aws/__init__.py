"""Adapters at the AWS edge: S3 object store, EventBridge publisher, settings, and the
jobs that connect them to the functional core. The only place (with ``custseg.local``)
that imports boto3."""
