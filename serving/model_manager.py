"""Version discovery, loading and unloading for one model, as TF Serving does it.

* ``<base_path>/<N>/`` with N made of digits are versions; anything else (``.tmp-3-abcd``,
  ``README``) is ignored, so an export written to a temp dir and renamed is never seen
  half-written.
* A version policy picks the *aspired* versions among those on disk: latest N (default 1),
  all, or specific versions.
* Every ``poll_seconds`` the base path is listed again and the manager moves towards the
  aspired set with TF Serving's availability-preserving policy: a new version is loaded
  before the old one is unloaded (requests keep being served by the old one meanwhile), an
  unaspired version is unloaded only once an aspired one is available (or when nothing is
  aspired any more: a removed version dir unloads it), and a load that fails leaves the
  old version serving. A failed load is retried ``max_load_retries`` times,
  ``load_retry_seconds`` apart (TF Serving: 5 times, 60 s), then the version ends with the
  error, shown by GetModelStatus.
* Requests resolve against an immutable snapshot of the loaded versions, swapped atomically,
  so the request path takes no lock.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from typing import Callable, Iterable, Optional

from tensorflow_serving.apis import get_model_status_pb2

from serving.servable import Servable, load_error, load_servable
from serving.status import ServingError, invalid_argument, not_found

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
_VERSION_DIR = re.compile(r"^[0-9]+$")


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which of the versions on disk should be loaded (TF Serving's
    ``model_version_policy``): ``latest(n)``, ``all()`` or ``specific(v, ...)``."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple = ()

    @classmethod
    def latest(cls, num_versions: int = 1) -> "VersionPolicy":
        if num_versions < 1:
            raise ValueError("latest policy needs num_versions >= 1")
        return cls("latest", num_versions)

    @classmethod
    def all(cls) -> "VersionPolicy":
        return cls("all")

    @classmethod
    def specific(cls, *versions: int) -> "VersionPolicy":
        if not versions:
            raise ValueError("specific policy needs at least one version")
        return cls("specific", versions=tuple(sorted(int(v) for v in versions)))

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """``latest``, ``latest:2``, ``all``, ``specific:1,3``."""
        kind, _, arg = text.partition(":")
        if kind == "latest":
            return cls.latest(int(arg) if arg else 1)
        if kind == "all" and not arg:
            return cls.all()
        if kind == "specific" and arg:
            return cls.specific(*(int(v) for v in arg.split(",")))
        raise ValueError(f"bad version policy {text!r}: latest[:N], all or specific:V[,V...]")

    def aspired(self, on_disk: Iterable[int]) -> set:
        versions = sorted(on_disk)
        if self.kind == "all":
            return set(versions)
        if self.kind == "specific":
            return set(versions) & set(self.versions)
        return set(versions[-self.num_versions:])


@dataclasses.dataclass(frozen=True)
class VersionState:
    """One version's entry of GetModelStatus."""

    state: int
    error_code: int = 0  # grpc/TF canonical code of the error that ended it, 0 when OK
    error_message: str = ""


@dataclasses.dataclass
class _Failure:
    attempts: int
    next_try: float
    final: bool
    error: ServingError


Loader = Callable[[str, int, str], Servable]


class ModelManager:
    """Serves the aspired versions of one model found under ``base_path``."""

    def __init__(self, base_path: str, name: str, *, poll_seconds: float = 1.0,
                 policy: Optional[VersionPolicy] = None, max_load_retries: int = 5,
                 load_retry_seconds: float = 60.0, warmup: bool = True,
                 loader: Optional[Loader] = None):
        self.base_path = os.path.abspath(base_path)
        self.name = name
        self.poll_seconds = poll_seconds
        self.policy = policy or VersionPolicy.latest()
        self.max_load_retries = max_load_retries
        self.load_retry_seconds = load_retry_seconds
        self._loader = loader or (lambda n, v, p: load_servable(n, v, p, warmup=warmup))
        self._serving: dict = {}  # version -> Servable; replaced, never mutated
        self._latest: Optional[Servable] = None
        self._states: dict = {}  # version -> VersionState
        self._failures: dict = {}  # version -> _Failure
        self._state_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_listing_problem: Optional[str] = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Loads what is aspired now (synchronously, like the server's startup), then polls
        in a background thread (not when ``poll_seconds`` <= 0)."""
        if not os.path.isdir(self.base_path):
            raise FileNotFoundError(f"model base path {self.base_path} does not exist")
        self._stop.clear()
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, daemon=True,
                                            name=f"poll-{self.name}")
            self._thread.start()

    def stop(self) -> None:
        """Stops polling and unloads every version."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._poll_lock:
            for version in sorted(self._serving):
                self._unload(version)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - keep polling whatever happens
                log.exception("polling %s failed", self.base_path)

    # ------------------------------------------------------------------ polling
    def versions_on_disk(self) -> Optional[dict]:
        """``{version: path}`` of the numeric version dirs; None when the base path cannot
        be listed (then nothing changes, as in TF Serving)."""
        try:
            names = os.listdir(self.base_path)
        except OSError as error:
            self._listing_problem(f"Could not find base path {self.base_path} for servable "
                                  f"{self.name} with error {error}")
            return None
        found = {}
        for child in sorted(names):
            path = os.path.join(self.base_path, child)
            if _VERSION_DIR.match(child) and os.path.isdir(path):
                found.setdefault(int(child), path)
        if not found:
            self._listing_problem(
                f"No versions of servable {self.name} found under base path "
                f"{self.base_path}. Did you forget to name your leaf directory as a number "
                f"(eg. '/1/')?")
        else:
            self._last_listing_problem = None
        return found

    def _listing_problem(self, message: str) -> None:
        if message != self._last_listing_problem:
            log.warning("%s", message)
            self._last_listing_problem = message

    def poll_once(self) -> None:
        """One poll: list the base path and load/unload until the aspired set is served."""
        with self._poll_lock:
            on_disk = self.versions_on_disk()
            if on_disk is None:
                return
            aspired = self.policy.aspired(on_disk)
            for version in sorted(set(self._failures) - aspired):
                failure = self._failures.pop(version)  # no longer wanted: ends with its error
                self._set_state(version, State.END, failure.error)
            for version in sorted(aspired - set(self._serving) - set(self._states_snapshot())):
                self._set_state(version, State.START)
            while not self._stop.is_set():
                action = self._next_action(aspired)
                if action is None:
                    break
                kind, version = action
                if kind == "unload":
                    self._unload(version)
                else:
                    self._load(version, on_disk[version])

    def _next_action(self, aspired: set):
        """TF Serving's AvailabilityPreservingPolicy."""
        loaded = set(self._serving)
        unaspired_ready = sorted(loaded - aspired)
        if unaspired_ready and (loaded & aspired or len(unaspired_ready) > 1 or not aspired):
            return "unload", unaspired_ready[0]
        now = time.monotonic()
        candidates = [v for v in aspired - loaded
                      if v not in self._failures
                      or (not self._failures[v].final and self._failures[v].next_try <= now)]
        if candidates:
            return "load", max(candidates)
        return None

    def _load(self, version: int, path: str) -> None:
        ident = f"{{name: {self.name} version: {version}}}"
        self._set_state(version, State.LOADING)
        log.info("Loading servable version %s from %s", ident, path)
        start = time.monotonic()
        try:
            servable = self._loader(self.name, version, path)
        except Exception as error:  # noqa: BLE001 - any failure keeps the old versions
            failure = load_error(error)
            previous = self._failures.get(version)
            attempts = (previous.attempts if previous else 0) + 1
            final = attempts > self.max_load_retries
            self._failures[version] = _Failure(
                attempts, time.monotonic() + self.load_retry_seconds, final, failure)
            if final:
                log.error("Loading servable %s failed after %d attempts: %s", ident, attempts,
                          failure)
                self._set_state(version, State.END, failure)
            else:
                log.error("Loading servable %s failed: %s; retrying in %.0f s (%d of %d "
                          "retries left)", ident, failure, self.load_retry_seconds,
                          self.max_load_retries - attempts + 1, self.max_load_retries)
            return
        self._failures.pop(version, None)
        serving = dict(self._serving)
        serving[version] = servable
        self._publish(serving)
        self._set_state(version, State.AVAILABLE)
        log.info("Successfully loaded servable version %s in %.2f s", ident,
                 time.monotonic() - start)

    def _unload(self, version: int) -> None:
        ident = f"{{name: {self.name} version: {version}}}"
        self._set_state(version, State.UNLOADING)
        log.info("Unloading servable version %s", ident)
        serving = dict(self._serving)
        serving.pop(version, None)
        self._publish(serving)  # requests in flight keep their reference until they finish
        self._set_state(version, State.END)
        log.info("Done unloading servable version %s", ident)

    def _publish(self, serving: dict) -> None:
        latest = serving[max(serving)] if serving else None
        # Two assignments, each atomic; a request between them sees a consistent pair
        # because both old and new servables stay usable.
        self._serving = serving
        self._latest = latest

    def _set_state(self, version: int, state: int, error: Optional[ServingError] = None):
        entry = VersionState(state) if error is None else VersionState(
            state, error.code.value[0], error.message)
        with self._state_lock:
            self._states[version] = entry

    def _states_snapshot(self) -> dict:
        with self._state_lock:
            return dict(self._states)

    # ------------------------------------------------------------------ queries
    def servable(self, model_spec) -> Servable:
        """The servable a request's ModelSpec names (ServerCore::GetServableHandle)."""
        name = model_spec.name
        if not name:
            raise invalid_argument("ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version_label":
            # No version labels are configured with --model_name/--model_base_path.
            raise invalid_argument(
                f"Unrecognized servable version label: {model_spec.version_label}")
        if choice == "version":
            version = model_spec.version.value
            found = self._serving.get(version) if name == self.name else None
            if found is None:
                raise not_found(f"Servable not found for request: Specific({name}, {version})")
            return found
        found = self._latest if name == self.name else None
        if found is None:
            raise not_found(f"Servable not found for request: Latest({name})")
        return found

    def version_states(self, name: str, version: Optional[int] = None) -> dict:
        """``{version: VersionState}`` for GetModelStatus, highest version first."""
        states = self._states_snapshot() if name == self.name else {}
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return {version: states[version]}
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return {v: states[v] for v in sorted(states, reverse=True)}

    @property
    def loaded_versions(self) -> list:
        return sorted(self._serving)

    def wait_until_available(self, version: int, timeout: float = 30.0) -> None:
        """Blocks until ``version`` serves (for tests and scripts); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while version not in self._serving:
            if time.monotonic() > deadline:
                raise TimeoutError(f"version {version} of {self.name} not available after "
                                   f"{timeout} s; states {self._states_snapshot()}")
            time.sleep(0.02)

