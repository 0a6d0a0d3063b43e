"""Images through the gateway: `POST /generate-image`, `POST /v1/images/generations`, and the
`ImageService` the jobs call (service.py has its API)."""
