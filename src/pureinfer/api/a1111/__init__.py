"""AUTOMATIC1111's web UI API on the worker: `POST /sdapi/v1/txt2img`, `GET /sdapi/v1/sd-models`,
`GET /sdapi/v1/samplers`, `GET /sdapi/v1/progress`, `GET`/`POST /sdapi/v1/options`."""
