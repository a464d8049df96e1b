# Multi-stage build: a static gatehouse binary on a distroless base,
# running as a non-root user with its data on a volume.
#   docker build -t gatehouse --build-arg VERSION=$(git describe --always) .
#   docker run -p 8080:8080 -v gatehouse-data:/var/lib/gatehouse \
#     -v $PWD/examples/docker/gatehouse.yaml:/etc/gatehouse/gatehouse.yaml:ro gatehouse
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/gatehouse ./cmd/gatehouse \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gatehouse /usr/local/bin/gatehouse
COPY --from=build --chown=65532:65532 /out/data /var/lib/gatehouse
USER 65532:65532
VOLUME ["/var/lib/gatehouse"]
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/gatehouse.yaml"]
