"""The worker's HTTP surfaces, one package each (router / protocol / serving): native (the
seed's text API), image, openai. admission.py is the one gate every piece of work passes."""
