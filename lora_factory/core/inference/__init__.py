"""Inference: one long-lived model process for chat / generation, and where its outputs go.

    client.py      InferenceClient (server side): starts, feeds and stops the inference worker process
    worker.py      the inference worker process: loads plugins, keeps a model session, streams events
    session.py     InferenceSession: what a plugin's infer hook sees; event collection
    generation.py  chat and generation requests: resolve, run, store outputs
    media.py       MediaStore: outputs under artifacts/outputs/ served by URL, uploads by id

Depends on: ``core.errors``, ``core.storage``, ``core.plugin_host``, ``core.process``.
"""
