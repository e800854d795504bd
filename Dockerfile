# doorsync and brivo-sim in a small runtime image, run as an unprivileged user.
#   docker build -t doorsync .
#   docker run -e DOORSYNC_SECRET_KEY=... -p 8080:8080 -v doorsync:/var/lib/doorsync doorsync
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p doorsync -p brivo-sim --bins \
 && strip target/release/doorsync target/release/brivo-sim

FROM debian:bookworm-slim
# CA certificates for Brivo's HTTPS; nothing else is needed (SQLite is built in, TLS is rustls).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/doorsync --create-home doorsync
COPY --from=build /src/target/release/doorsync /src/target/release/brivo-sim /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/doorsync
ENV DOORSYNC_LISTEN=0.0.0.0:8080 \
    DOORSYNC_DATABASE_URL=sqlite:///var/lib/doorsync/doorsync.db \
    DOORSYNC_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/doorsync"]
HEALTHCHECK --interval=30s --timeout=6s --start-period=30s --retries=3 CMD ["doorsync", "health"]
ENTRYPOINT ["doorsync"]
CMD ["serve"]
