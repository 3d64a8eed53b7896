# The service with SoftHSM2. Build: docker build -t kms .   (see docker-compose.yml)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin kms

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends softhsm2 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kms /usr/local/bin/kms
COPY hsm/ /opt/kms/hsm/
COPY hsm/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV SOFTHSM2_CONF=/var/lib/kms/softhsm/softhsm2.conf
VOLUME /var/lib/kms
EXPOSE 4000
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
