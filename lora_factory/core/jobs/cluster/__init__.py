"""Training jobs handed to a Ray cluster (issue 15 §3): the host never runs cluster code of its own.

- ``config``: which cluster (setting ``cluster_address`` or ``serve --cluster``), how many workers and
  the resources each asks for; the executor block written into a job's spec; the submit-time checks.
- ``probe``: a short subprocess that asks the cluster for its nodes and free resources (the server
  imports no Ray), and the cached monitor the scheduler and the System tab read.
- ``driver``: what the local job worker runs for a cluster job: connect, start Ray Train's
  ``TorchTrainer``, relay progress and cancel between the ranks and the job row.
- ``rank``: the function each Ray Train worker runs.

Storage: the cluster must see the workspace at one path on every node (shared storage, see
docs/scaling.md). Ranks write the run folder (log, metrics, samples, checkpoints, the adapter) there;
only the SQLite job row stays local, fed through a small Ray actor, because SQLite must not be
written over a network file system.
"""
