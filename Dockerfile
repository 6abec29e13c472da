# One image for every custseg function; each chooses its handler with ImageConfig.Command.
# The project is installed from pyproject.toml: there is no second dependency list.
FROM public.ecr.aws/lambda/python:3.12

COPY pyproject.toml README.md /tmp/build/
COPY shared /tmp/build/shared
RUN pip install --no-cache-dir /tmp/build && rm -rf /tmp/build

COPY functions ${LAMBDA_TASK_ROOT}/functions

# Default handler; the template overrides it per function.
CMD ["functions.ingest.app.lambda_handler"]
