# tradekernel in a container: the journal on the /data volume, `tradekernel run` as entrypoint,
# health checked on /healthz (docs/deployment.md).
#
#   docker build -t tradekernel .
#   docker run -d --name tk -v tk-data:/data -p 127.0.0.1:8080:8080 tradekernel
#   docker run -d --name tk -v tk-data:/data -p 127.0.0.1:8080:8080 tradekernel --config /data/kernel.toml
#
# Arguments after the image name are `tradekernel run` options. Stop with `docker stop -t 30`:
# the kernel stops cleanly on SIGTERM (cancels, acks, journal closed) within that bound.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kernel ./kernel
COPY machines ./machines
COPY storage ./storage
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADEKERNEL_KERNEL__DB=/data/tradekernel.db \
    TRADEKERNEL_KERNEL__STATUS_VIEW=off \
    TRADEKERNEL_KERNEL__LOG_FORMAT=json \
    TRADEKERNEL_HTTP__LISTEN=0.0.0.0:8080 \
    TRADEKERNEL_HTTP__ALLOW_REMOTE=true
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin tradekernel \
    && mkdir -p /data \
    && chown tradekernel:tradekernel /data \
    && chmod 0700 /data
USER tradekernel:tradekernel
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["tradekernel", "run"]
