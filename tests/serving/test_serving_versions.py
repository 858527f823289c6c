"""Version handling as TF Serving does it: new versions are loaded while the old one keeps
serving, exports in progress are never served, a failed load keeps the old version, and a
removed version dir is unloaded."""
import logging
import os
import shutil
import threading
import time

import grpc
import pytest
from tensorflow_serving.apis import prediction_log_pb2

import serving.server
from serving.model_manager import VersionPolicy
from serving.server import LocalServer
from serving_helpers import MODEL, Stubs, add_version, wait_for

POLL = 0.05


@pytest.fixture
def loads(monkeypatch):
    """Records every load attempt of the servers started in the test: (version, path, ok)."""
    attempts = []
    real = serving.server.load_servable

    def recording(name, version, path, **kwargs):
        try:
            servable = real(name, version, path, **kwargs)
        except Exception:
            attempts.append((version, os.path.basename(path), False))
            raise
        attempts.append((version, os.path.basename(path), True))
        return servable

    monkeypatch.setattr(serving.server, "load_servable", recording)
    return attempts


class Traffic:
    """A client thread issuing Predict requests until stopped; records versions and errors."""

    def __init__(self, address, examples):
        self.stubs = Stubs(address)
        self.examples = examples
        self.versions = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                response = self.stubs.predict(self.examples, timeout=10)
                self.versions.append(response.model_spec.version.value)
            except grpc.RpcError as error:
                self.errors.append((error.code(), error.details()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)
        self.stubs.close()

    def served(self, version, times=5):
        return len(self.versions) >= times and self.versions[-times:] == [version] * times


def test_new_version_is_loaded_while_requests_keep_succeeding(trained, tmp_path, caplog, loads):
    caplog.set_level(logging.INFO, logger="serving")
    base = trained.base(tmp_path, versions=(1,))
    with LocalServer(base, MODEL, poll_seconds=POLL) as server:
        with Traffic(server.address, trained.examples[:50]) as traffic:
            wait_for(lambda: traffic.served(1), what="traffic on version 1")
            add_version(trained.template, base, 2)  # temp dir + rename, like export_model
            wait_for(lambda: traffic.served(2), what="responses from version 2")
        stubs = Stubs(server.address)
        assert stubs.status() == {2: ("AVAILABLE", 0, ""), 1: ("END", 0, "")}
        stubs.close()
    assert traffic.errors == []
    switch = traffic.versions.index(2)
    assert switch > 0 and set(traffic.versions[:switch]) == {1}
    assert set(traffic.versions[switch:]) == {2}  # once switched, never back
    messages = [r.getMessage() for r in caplog.records]
    loaded_2 = next(i for i, m in enumerate(messages) if m.startswith(
        f"Successfully loaded servable version {{name: {MODEL} version: 2}}"))
    unloading_1 = messages.index(f"Unloading servable version {{name: {MODEL} version: 1}}")
    assert loaded_2 < unloading_1  # load the new one before unloading the old one
    assert [(v, ok) for v, _, ok in loads] == [(1, True), (2, True)]


def test_exports_in_progress_are_never_served(trained, tmp_path, loads):
    base = trained.base(tmp_path, versions=(1,))
    with LocalServer(base, MODEL, poll_seconds=POLL) as server:
        stubs = Stubs(server.address)
        # A complete SavedModel under a temp name is not a version.
        shutil.copytree(trained.template, os.path.join(base, ".tmp-2-abcd1234"))
        # A version written file by file into a temp dir, renamed only at the end.
        tmp = os.path.join(base, ".tmp-3-0f0f0f0f")
        os.makedirs(tmp)
        for entry in sorted(os.listdir(trained.template)):
            source = os.path.join(trained.template, entry)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(tmp, entry))
            else:
                shutil.copy(source, os.path.join(tmp, entry))
            time.sleep(4 * POLL)  # several polls see every partial state
            assert stubs.predict(trained.examples[:5]).model_spec.version.value == 1
        assert [v for v, _, _ in loads] == [1]
        assert stubs.status() == {1: ("AVAILABLE", 0, "")}
        with pytest.raises(grpc.RpcError) as info:
            stubs.status(version=3)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        os.rename(tmp, os.path.join(base, "3"))
        wait_for(lambda: stubs.predict(trained.examples[:5]).model_spec.version.value == 3,
                 what="version 3")
        # The real exporter, polled every 50 ms while it writes: never seen half-written.
        from ranking.export import export_model
        path = export_model(trained.model, trained.schema, trained.config.feature_names, base)
        assert os.path.basename(path) == "4"
        wait_for(lambda: stubs.predict(trained.examples[:5]).model_spec.version.value == 4,
                 what="version 4")
        stubs.close()
    assert loads == [(1, "1", True), (3, "3", True), (4, "4", True)]


def _broken_warmup(template, base, version, model_name=MODEL):
    """A copy of the export whose warmup asks for a signature that does not exist."""
    tmp = os.path.join(base, f".tmp-{version}-broken")
    shutil.copytree(template, tmp)
    from tensorflow_serving.apis import predict_pb2
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = "no_such_signature"
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    with tf.io.TFRecordWriter(os.path.join(tmp, "assets.extra",
                                           "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())
    os.rename(tmp, os.path.join(base, str(version)))


def test_failed_load_keeps_the_old_version(trained, tmp_path, loads):
    base = trained.base(tmp_path, versions=(1,))
    with LocalServer(base, MODEL, poll_seconds=POLL, max_load_retries=1,
                     load_retry_seconds=0.2) as server:
        stubs = Stubs(server.address)
        _broken_warmup(trained.template, base, 2)  # a warmup error fails the load
        ended = wait_for(lambda: stubs.status().get(2, ("",))[0] == "END",
                         what="version 2 to fail")
        assert ended
        state, code, message = stubs.status()[2]
        assert code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert message == 'Serving signature key "no_such_signature" not found.'
        assert stubs.status()[1] == ("AVAILABLE", 0, "")
        assert stubs.predict(trained.examples[:5]).model_spec.version.value == 1
        assert [(v, ok) for v, _, ok in loads] == [(1, True), (2, False), (2, False)]  # 1 retry
        time.sleep(10 * POLL)
        assert len(loads) == 3  # no more retries
        # A newer good version replaces both.
        add_version(trained.template, base, 3)
        wait_for(lambda: stubs.predict(trained.examples[:5]).model_spec.version.value == 3,
                 what="version 3")
        wait_for(lambda: stubs.status()[1][0] == "END", what="version 1 unloaded")
        stubs.close()


def test_removing_a_version_dir_unloads_it(trained, tmp_path, loads):
    base = trained.base(tmp_path, versions=(1, 2))
    with LocalServer(base, MODEL, poll_seconds=POLL) as server:
        stubs = Stubs(server.address)
        assert stubs.predict(trained.examples[:5]).model_spec.version.value == 2
        assert stubs.status() == {2: ("AVAILABLE", 0, "")}  # latest-1: version 1 not loaded
        shutil.rmtree(os.path.join(base, "2"))
        # Version 1 is aspired again: loaded, then 2 is unloaded.
        wait_for(lambda: stubs.predict(trained.examples[:5]).model_spec.version.value == 1,
                 what="back to version 1")
        wait_for(lambda: stubs.status() == {2: ("END", 0, ""), 1: ("AVAILABLE", 0, "")},
                 what="version 2 unloaded")
        shutil.rmtree(os.path.join(base, "1"))  # nothing left: unloaded, NOT_FOUND
        wait_for(lambda: stubs.status()[1][0] == "END", what="version 1 unloaded")
        with pytest.raises(grpc.RpcError) as info:
            stubs.predict(trained.examples[:5])
        assert (info.value.code(), info.value.details()) == (
            grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({MODEL})")
        stubs.close()
    assert [v for v, _, _ in loads] == [2, 1]


def test_non_numeric_children_are_ignored_and_policies(trained, tmp_path, loads):
    base = trained.base(tmp_path, versions=(1, 3))
    os.makedirs(os.path.join(base, "not-a-version"))
    os.makedirs(os.path.join(base, "4x"))
    with open(os.path.join(base, "5"), "w") as f:  # a file, not a directory
        f.write("x")
    with LocalServer(base, MODEL, poll_seconds=0, version_policy=VersionPolicy.all()) as server:
        stubs = Stubs(server.address)
        assert stubs.status() == {3: ("AVAILABLE", 0, ""), 1: ("AVAILABLE", 0, "")}
        assert stubs.predict(trained.examples[:5]).model_spec.version.value == 3  # latest
        assert stubs.predict(trained.examples[:5], version=1).model_spec.version.value == 1
        stubs.close()
    assert VersionPolicy.parse("latest:2").aspired([1, 3, 7]) == {3, 7}
    assert VersionPolicy.parse("specific:1,7").aspired([1, 3]) == {1}
    assert sorted(v for v, _, _ in loads) == [1, 3]
