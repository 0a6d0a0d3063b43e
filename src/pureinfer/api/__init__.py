"""The worker's HTTP surfaces, one package each (router / protocol / serving): native (the text API
of WORKER_API.md), image, openai. admission.py is the one gate every piece of work passes;
native/validation.py turns every text request into the one validated request engines run."""
