// Package composecheck holds the tests that check docker-compose.yml, the
// Dockerfile and the Envoy bootstraps against each other without a Docker
// engine: the compose file is loaded with the compose-spec loader used by
// `docker compose` itself. The package has no non-test code.
package composecheck
