"""Jobs: every long operation (download, refine, train, eval, tiny-model) as a queued worker process.

    store.py       JobStore: the jobs table (status, progress, cancel flag)
    scheduler.py   JobManager: submit, start workers in their own process group, cancel, reap
    worker.py      what runs in the job process: load plugins, call the owner's hook, report
    context.py     JobContext: progress, log, samples, should_stop, paths (what a hook's ``ctx`` is)
    checkpoints.py the newest complete checkpoint of a run
    finalize.py    publish a job's output (temp folder, then rename) and register it with its lineage
    recovery.py    rebuild the history from runs/ and lora_adapters/ after a damaged database; leftovers
    regression.py  prompt suites run against an adapter and its base (the ``eval`` job)
    submit.py      JobSubmitter: the ``start_*`` operations (request -> resolved spec -> queued job)
    views.py       JobViews: a job as clients see it, its log tail, metrics and samples
    health.py      HostHealth: what keeps the server from working (scheduler, settings, disk), notices
    gpu_release.py ChatModelRelease: the chat's model process stopped before a GPU-bound job
    devices.py     the machine's devices (nvidia-smi / LORA_FACTORY_DEVICES), a job's request, worker env
    device_table.py DeviceTable: which job (or the chat model) holds which device now

Depends on: ``core.storage``, ``core.catalog``, ``core.plugin_host``, ``core.inference`` (regression).
"""
