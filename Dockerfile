# Multi-stage build of Debrief: build the web app, compile the binary (which embeds the app),
# then a small runtime image.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
RUN npm run build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /src/web/dist /src/web/dist
RUN cargo build --release --locked -p debrief-server --bin debrief

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data debrief \
    && mkdir -p /data && chown debrief /data
COPY --from=build /src/target/release/debrief /usr/local/bin/debrief
USER debrief
VOLUME ["/data"]
ENV DEBRIEF_LISTEN=0.0.0.0:4000 \
    DEBRIEF_DATA_DIR=/data \
    DEBRIEF_LOG_FORMAT=json
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s \
    CMD curl -fsS http://127.0.0.1:4000/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/debrief"]
