# One image for every custseg function; each chooses its handler with ImageConfig.Command.
# The runtime libraries are the pinned set of requirements.lock (the tests run against the
# same versions), so rebuilding the image never changes what a champion was trained with.
FROM public.ecr.aws/lambda/python:3.11

COPY requirements.lock pyproject.toml README.md /tmp/build/
COPY shared /tmp/build/shared
RUN pip install --no-cache-dir -r /tmp/build/requirements.lock \
    && pip install --no-cache-dir --no-deps /tmp/build && rm -rf /tmp/build

COPY functions ${LAMBDA_TASK_ROOT}/functions

# Default handler; the template overrides it per function.
CMD ["functions.ingest.app.lambda_handler"]
