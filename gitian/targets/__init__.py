"""Backend registry.  Modules are imported lazily so start-up stays lean."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

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
    found = [name for name in ("bwrap", "docker") if make_target(name, config).has_base()]
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
    suite: str,
    arch: str,
    env: Mapping[str, str],
    distro: str | None = None,
    memory_mib: int | None = None,
    nprocs: int | None = None,
) -> TargetConfig:
    """Read the classic environment variables once, at the edge."""

    def num(var: str, default: int) -> int:
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

    cli = env.get("GITIAN_CONTAINER_CLI", "docker") or "docker"
    if cli not in ("docker", "podman"):
        raise UsageError(f"GITIAN_CONTAINER_CLI must be docker or podman, not {cli!r}")
    return TargetConfig(
        home=home,
        suite=suite,
        arch=arch,
        distro=distro or env.get("DISTRO") or "ubuntu",
        memory_mib=memory_mib if memory_mib is not None else num("VMEM", 2000),
        nprocs=nprocs if nprocs is not None else num("NPROCS", 2),
        lxc_bridge=env.get("LXC_BRIDGE") or None,
        lxc_guest_ip=env.get("LXC_GUEST_IP") or "10.0.2.5",
        host_ip=env.get("GITIAN_HOST_IP") or "10.0.2.2",
        lxc_execute=_truthy(env.get("LXC_EXECUTE")),
        mirror_host=env.get("MIRROR_HOST") or None,
        allow_privileged=_truthy(env.get("GITIAN_ALLOW_PRIVILEGED")),
        kvm_binary=env.get("KVM") or None,
        ssh_port=num("VM_SSH_PORT", 2223),
        container_cli=cli,
        # GITIAN_VAGRANT_BOX: the Vagrant box make-base-vm --vbox starts from.
        extra={"vagrant_box": env["GITIAN_VAGRANT_BOX"]} if env.get("GITIAN_VAGRANT_BOX") else {},
    )


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
