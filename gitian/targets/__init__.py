"""Backend registry.  Modules are imported lazily so start-up stays lean."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from gitian.errors import UsageError
from gitian.home import Home
from gitian.targets.base import Target, TargetConfig

# Ordered: the order `--backend` help and the "fastest available" search use.
BACKENDS: dict[str, str] = {
    "bwrap": "gitian.targets.bwrap:BwrapTarget",
    "lxc": "gitian.targets.lxc:LxcTarget",
    "docker": "gitian.targets.docker:DockerTarget",
    "kvm": "gitian.targets.kvm:KvmTarget",
    "vbox": "gitian.targets.vbox:VBoxTarget",
}


def _truthy(v: str | None) -> bool:
    # The classic scripts test `[ -n "$USE_LXC" ]`; we also accept 0/false/no as off.
    return v is not None and v.strip().lower() not in ("", "0", "false", "no")


#: The variables that choose a backend, in the order they are looked at.
BACKEND_VARIABLES: dict[str, str] = {
    "USE_LXC": "lxc",
    "USE_DOCKER": "docker",
    "USE_VBOX": "vbox",
    "USE_BWRAP": "bwrap",
}


def choose_backend(explicit: str | None, env: Mapping[str, str]) -> str:
    """``--backend`` if given, else USE_LXC / USE_DOCKER / USE_VBOX / USE_BWRAP, else kvm."""
    if explicit:
        if explicit not in BACKENDS:
            raise UsageError(f"unknown backend {explicit!r} (choose from {', '.join(BACKENDS)})")
        return explicit
    for var, name in BACKEND_VARIABLES.items():
        if _truthy(env.get(var)):
            return name
    return "kvm"


def check_default_backend(
    explicit: str | None, env: Mapping[str, str], config: TargetConfig
) -> None:
    """When nothing chose a backend, KVM is the one (as classic).  If it has
    no base here but bubblewrap/LXC or Docker has one, the user most likely
    forgot the variable: say which, rather than leave KVM to say "make a KVM
    base"."""
    if explicit or choose_backend(None, env) != "kvm" or make_target("kvm", config).has_base():
        return

    def has_base(name: str) -> bool:
        own = config_from_env(
            config.home, backend=name, suite=config.suite, arch=config.arch, env=env,
            distro=config.distro,
        )
        return make_target(name, own).has_base()

    found = [name for name in ("bwrap", "docker") if has_base(name)]
    if found:
        raise other_bases_error(config, found)


def other_bases_error(config: TargetConfig, found: list[str]) -> UsageError:
    """The error :func:`check_default_backend` raises; ``found`` names the
    backends with a base ("bwrap" standing for bubblewrap and LXC, which share one)."""
    suite, arch = config.suite, config.image_arch
    offers = {
        "bwrap": (f"a bubblewrap/LXC base ({config.home.base(suite, arch).name}/)", "bwrap", "lxc"),
        "docker": ("a Docker base image", "docker"),
    }
    what = [offers[n][0] for n in found]
    names = [b for n in found for b in offers[n][1:]]
    variables = [v for b in names for v, name in BACKEND_VARIABLES.items() if name == b]
    return UsageError(
        f"no KVM base for {suite} {arch} here (KVM is the backend when nothing chooses one), "
        f"but there is {' and '.join(what)}: set {' or '.join(f'{v}=1' for v in variables)} "
        f"(or pass --backend {'|'.join(names)})",
        hint=f"or make a KVM base: make-base-vm --distro {config.distro} --suite {suite} "
        f"--arch {arch}",
    )


def backend_class(name: str) -> type[Target]:
    module, _, cls = BACKENDS[name].partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise UsageError(f"the {name} backend is not available yet") from None
        raise
    klass: type[Target] = getattr(mod, cls)
    return klass


def config_from_env(
    home: Home,
    *,
    backend: str,
    suite: str,
    arch: str,
    env: Mapping[str, str],
    distro: str | None = None,
    memory_mib: int | None = None,
    nprocs: int | None = None,
) -> TargetConfig:
    """``backend``'s configuration: the classic environment variables, read
    once, here at the edge (no backend reads the environment itself)."""
    shared = TargetConfig(
        home=home,
        suite=suite,
        arch=arch,
        distro=distro or env.get("DISTRO") or "ubuntu",
        memory_mib=memory_mib if memory_mib is not None else _number(env, "VMEM", 2000),
        nprocs=nprocs if nprocs is not None else _number(env, "NPROCS", 2),
        mirror_host=env.get("MIRROR_HOST") or None,
    )
    settings = _SETTINGS.get(backend)
    if settings is None:
        return shared
    return replace(shared.specialise(backend_class(backend).config_type), **settings(env))


def _number(env: Mapping[str, str], var: str, default: int) -> int:
    v = env.get(var)
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise UsageError(f"{var} must be a number, not {v!r}") from None
    if n <= 0:
        raise UsageError(f"{var} must be positive, not {v!r}")
    return n


def _lxc_settings(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "lxc_bridge": env.get("LXC_BRIDGE") or None,
        "lxc_guest_ip": env.get("LXC_GUEST_IP") or "10.0.2.5",
        "host_ip": env.get("GITIAN_HOST_IP") or "10.0.2.2",
        "lxc_execute": _truthy(env.get("LXC_EXECUTE")),
    }


def _docker_settings(env: Mapping[str, str]) -> dict[str, Any]:
    cli = env.get("GITIAN_CONTAINER_CLI") or "docker"
    if cli not in ("docker", "podman"):
        raise UsageError(f"GITIAN_CONTAINER_CLI must be docker or podman, not {cli!r}")
    return {
        "container_cli": cli,
        "allow_privileged": _truthy(env.get("GITIAN_ALLOW_PRIVILEGED")),
        "docker_host": env.get("DOCKER_HOST") or None,
    }


def _kvm_settings(env: Mapping[str, str]) -> dict[str, Any]:
    return {"ssh_port": _number(env, "VM_SSH_PORT", 2223), "kvm_binary": env.get("KVM") or None}


def _vbox_settings(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "ssh_port": _number(env, "VM_SSH_PORT", 2223),
        "vagrant_box": env.get("GITIAN_VAGRANT_BOX") or None,
    }


#: each backend's own settings from the classic environment variables
_SETTINGS: dict[str, Callable[[Mapping[str, str]], dict[str, Any]]] = {
    "lxc": _lxc_settings,
    "docker": _docker_settings,
    "kvm": _kvm_settings,
    "vbox": _vbox_settings,
}


def fastest_available(order: tuple[str, ...] = ("bwrap", "lxc", "docker", "kvm")) -> str:
    """The first backend in ``order`` (fastest first) that can make a base here."""
    reasons = []
    for name in order:
        try:
            reason = backend_class(name).unavailable_reason(for_base=True)
        except UsageError as e:
            reason = e.message
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise UsageError("no backend can run on this host: " + "; ".join(reasons))


def make_target(name: str, config: TargetConfig) -> Target:
    return backend_class(name)(config)
