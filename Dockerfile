# One image, two entrypoints: servicepool-operator (default) and servicepool-proxy.
# BASE_IMAGE: any Python >= 3.11 image whose `pip` installs onto PATH (e2e/cluster/images.sh
# passes a locally built Debian one where no registry is reachable).
ARG BASE_IMAGE=python:3.11-slim
# BUILD_IMAGE: the same Python as BASE_IMAGE plus a C compiler and Python's headers, so the
# proxy's request path is compiled (images.sh passes one built like its base).
ARG BUILD_IMAGE=python:3.11
FROM ${BUILD_IMAGE} AS build
# pip's settings (index, CA bundle) where the build needs the host's: images.sh mounts a file.
ARG PIP_CONFIG_FILE
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY operator ./operator
COPY api ./api
COPY dev ./dev
COPY setup.py ./
# The proxy's request path compiled with mypyc when the build image has a C compiler (and
# SERVICEPOOL_COMPILE is not 0); otherwise the same modules run as Python.
ARG SERVICEPOOL_COMPILE=1
# mypyc type-checks against the dependencies: they are installed here, the project is not.
RUN if [ "$SERVICEPOOL_COMPILE" = 1 ] && command -v gcc >/dev/null \
        && SERVICEPOOL_COMPILE=0 pip install --no-cache-dir "mypy>=1.11" "setuptools>=77" wheel \
          ".[operator]" \
        && pip uninstall --yes servicepool; then \
      SERVICEPOOL_COMPILE=1 pip wheel --no-cache-dir --no-build-isolation --wheel-dir /wheels \
        ".[operator]"; \
    else \
      SERVICEPOOL_COMPILE=0 pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"; \
    fi

FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin servicepool
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "servicepool[operator]" \
    && rm -rf /wheels
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# The proxy's port and admin port; the operator's health port and the metrics port the
# chart gives it (--metrics).
EXPOSE 8080 9090 8081 8082
CMD ["servicepool-operator", "--all-namespaces"]
