"""Every server and process model serving the same app: gunicorn, uWSGI, mod_wsgi, uvicorn, hypercorn."""
