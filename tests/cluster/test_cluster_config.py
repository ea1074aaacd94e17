"""The cluster's pure decisions, without Ray: addresses, where workers fit, paths on the nodes, the workspace check."""

from __future__ import annotations

import json

import pytest

from lora_factory.core.errors import LoRAFactoryError
from lora_factory.core.jobs.cluster.config import ENV_ADDRESS, executor_for, fits, parse_address
from lora_factory.core.jobs.cluster.rank import check_shared_workspace, remap_paths
from lora_factory.core.storage.settings import update_settings


def test_addresses_name_a_node_or_a_ray_client_with_their_default_ports():
    assert parse_address("10.0.0.5") == ("10.0.0.5", 6379)
    assert parse_address("head.local:6380") == ("head.local", 6380)
    assert parse_address("ray://10.0.0.5") == ("10.0.0.5", 10001)
    assert parse_address("ray://[::1]:10002") == ("::1", 10002)
    for bad in ("", "http://x:1", "a b:1", "host:port"):
        with pytest.raises(LoRAFactoryError) as err:
            parse_address(bad)
        assert err.value.code == "CLUSTER_ADDRESS_INVALID" and err.value.http_status == 422


def test_a_worker_must_fit_on_one_node_not_only_in_the_clusters_total():
    nodes = [{"alive": True, "available": {"CPU": 1.0}}, {"alive": True, "available": {"CPU": 1.0}},
             {"alive": False, "available": {"CPU": 8.0}}]
    assert fits({"CPU": 1}, 2, nodes, "available")
    assert not fits({"CPU": 2}, 1, nodes, "available")  # 2 CPUs free in all, but on two nodes; the dead one counts not
    assert not fits({"CPU": 1}, 3, nodes, "available")
    assert not fits({"GPU": 1}, 1, nodes, "available")
    assert fits({"CPU": 0.5}, 4, nodes, "available")


def test_the_setting_and_serve_cluster_choose_the_executor(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_ADDRESS, raising=False)
    assert executor_for(tmp_path) is None  # no cluster: jobs train here
    update_settings(tmp_path, {"cluster_address": "10.0.0.5:6379", "cluster_workers": 2,
                               "cluster_resources_per_worker": {"GPU": 1, "CPU": 4}, "cluster_workspace": "/mnt/lf"})
    ex = executor_for(tmp_path)
    assert (ex.address, ex.workers, ex.use_gpu, ex.workspace) == ("10.0.0.5:6379", 2, True, "/mnt/lf")
    assert ex.need() == {"GPU": 2, "CPU": 8}
    monkeypatch.setenv(ENV_ADDRESS, "ray://head:10001")  # what `serve --cluster` sets for its run
    assert executor_for(tmp_path).address == "ray://head:10001"


def test_spec_paths_move_to_the_workspace_mount_on_the_nodes_and_nothing_else_does():
    spec = {"base_model": "/home/u/ws/models/text/tiny", "dataset": "/home/u/ws2/x.jsonl",
            "params": {"files": ["/home/u/ws/datasets/a.jsonl"]}, "output_name": "/home/u/ws"}
    moved = remap_paths(spec, "/home/u/ws", "/mnt/lf")
    assert moved == {"base_model": "/mnt/lf/models/text/tiny", "dataset": "/home/u/ws2/x.jsonl",
                     "params": {"files": ["/mnt/lf/datasets/a.jsonl"]}, "output_name": "/mnt/lf"}
    assert remap_paths(spec, "/home/u/ws", "/home/u/ws") is spec


def test_a_node_that_does_not_see_the_workspace_refuses_before_creating_anything(tmp_path):
    with pytest.raises(LoRAFactoryError) as err:
        check_shared_workspace(tmp_path / "ws", "20260101_000000_abcd")
    assert err.value.code == "CLUSTER_WORKSPACE_NOT_SHARED" and "cluster_workspace" in err.value.message_en
    assert not (tmp_path / "ws").exists()
    run = tmp_path / "ws" / "runs" / "20260101_000000_abcd"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"job_id": "20260101_000000_abcd"}), encoding="utf-8")
    assert check_shared_workspace(tmp_path / "ws", "20260101_000000_abcd") == run


class _FixedMonitor:
    """The monitor's last answer, fixed: the cluster's nodes and what is free on them."""

    def __init__(self, free_cpus: float) -> None:
        self.answer = {"ok": True, "checked_at": 1.0, "nodes": [{"alive": True, "available": {"CPU": free_cpus}}]}
        self.invalidated: list[str] = []

    def snapshot(self, address=None, wait=False, timeout=0):  # noqa: ANN001
        return self.answer

    def invalidate(self, address: str) -> None:
        self.invalidated.append(address)


def test_the_queue_holds_a_cluster_job_until_its_workers_fit_the_free_resources_and_lets_local_jobs_pass(tmp_path):
    from lora_factory.core.jobs.cluster.admission import ClusterGate
    from lora_factory.core.jobs.store import JobStore

    store = JobStore(tmp_path / "db.sqlite3")
    executor = {"kind": "ray", "address": "10.0.0.5:6379", "workers": 2, "resources_per_worker": {"CPU": 1.0}}
    cluster_job = store.create("train", "text", {"executor": executor}, "a", gpu=False)
    local_job = store.create("train", "text", {}, "b", gpu=True)
    monitor = _FixedMonitor(free_cpus=1.0)
    waited: list[tuple[str, str]] = []
    gate = ClusterGate(monitor)
    gate.on_wait = lambda job_id, line: waited.append((job_id, line))
    assert store.claim_next(1, 4, can_start=gate.can_start)["id"] == local_job  # the cluster job waits, the local one starts
    assert store.claim_next(1, 4, can_start=gate.can_start) is None
    assert waited and waited[0][0] == cluster_job and "2 worker(s)" in waited[0][1] and len(waited) == 1  # said once
    monitor.answer["nodes"][0]["available"]["CPU"] = 2.0  # the cluster freed a CPU
    assert store.claim_next(1, 4, can_start=gate.can_start)["id"] == cluster_job
    assert monitor.invalidated == ["10.0.0.5:6379"]  # asked again before the next cluster job
    store.close()


def test_a_cluster_job_without_ray_installed_is_refused_at_submit(tmp_path, monkeypatch):
    import importlib.util

    from lora_factory.core.jobs.cluster import admission

    monkeypatch.delenv(ENV_ADDRESS, raising=False)
    update_settings(tmp_path, {"cluster_address": "10.0.0.5:6379"})
    real = importlib.util.find_spec
    monkeypatch.setattr(admission.importlib.util, "find_spec", lambda name: None if name == "ray" else real(name))
    with pytest.raises(LoRAFactoryError) as err:
        admission.plan_cluster_job(tmp_path, monitor=None)
    assert err.value.code == "CLUSTER_RAY_MISSING" and "lora-factory[cluster]" in err.value.message_en
