# The ordo engine and its plugins in one image, run as a non-root user.
#   docker compose -f localstack-compose.yml --profile engine up --build
# (`make run-engine` runs the engine natively instead; this image is for Docker users and for
# deploying.) The build stage compiles the engine and the plugins; the runtime stage holds only
# the binary, the plugins, the pipelines file and the self-test samples.

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --locked --release -p ordo \
 && cargo build --locked --profile plugin --target wasm32-wasip2 \
      -p patient-profile-lww -p patient-profile-field-merge \
 && mkdir -p /out/plugins/build \
 && cp target/release/ordo /out/ \
 && cp target/wasm32-wasip2/plugin/patient_profile_lww.wasm \
       target/wasm32-wasip2/plugin/patient_profile_field_merge.wasm /out/plugins/build/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin ordo
WORKDIR /app
COPY --from=build /out/ordo /usr/local/bin/ordo
COPY --from=build /out/plugins/build plugins/build
COPY pipelines.toml ./
COPY plugins/samples plugins/samples
# Owned by root and not writable by the engine: a plugin is swapped by replacing the file from
# outside (a mounted volume), never by the engine itself.
USER 10001:10001
EXPOSE 3000
# A container is reached from outside its own loopback, so the engine listens on every address.
# Without an [auth] table in the pipelines file it then refuses to start (it would serve
# patient data to anyone): mount a pipelines.toml with [auth] (README, Security), or, for a
# development stack only, set ORDO_INSECURE_NO_AUTH=true as localstack-compose.yml does.
ENV ORDO_LISTEN=0.0.0.0:3000
ENTRYPOINT ["ordo"]
CMD ["run"]
