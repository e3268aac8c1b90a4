# One image, two entrypoints: servicepool-operator (default) and servicepool-proxy.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[operator]"

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin servicepool
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "servicepool[operator]" \
    && rm -rf /wheels
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080 9090 8081
CMD ["servicepool-operator", "--all-namespaces"]
