"""The VirtualBox backend (``USE_VBOX=1``), as the classic tool drove it.

**Untested on a real VirtualBox**: VirtualBox is not in Debian and cannot run
on the machines this project is developed and tested on.  The tests check the
exact ``VBoxManage`` and ``vagrant`` command sequences against stand-in
programs that record their arguments, and the SSH side shares its code
(:class:`gitian.ssh.SshTarget`) with the KVM backend, which is tested on real
VMs.

* The VM is ``Gitian-<suite>-<arch>``; its snapshot ``Gitian-Clean`` is the
  base.  ``make-base-vm --vbox`` makes both with Vagrant: ``vagrant up`` of a
  generated Vagrantfile (the box, the VM's name, memory, CPUs and the SSH port
  come in through the environment, so no value is ever spliced into Ruby),
  ``vagrant halt``, then ``VBoxManage snapshot ... take Gitian-Clean``.
* ``make-clean-vm`` restores ``Gitian-Clean``; ``start-target`` is
  ``VBoxManage startvm --type headless``; ``stop-target`` is ``VBoxManage
  controlvm ... savestate`` (only when the VM runs).
* Commands and copies go over SSH to ``127.0.0.1:2223`` (``VM_SSH_PORT``) as
  root with ``var/id_rsa``, other users through ``sudo -u``: the same SSH
  code as the KVM backend.

The Vagrant box defaults to ``<distro>/<suite>64`` (``32`` for i386) and is
named with ``GITIAN_VAGRANT_BOX``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from gitian import bootstrap, log, vmimage
from gitian.errors import TargetError, UsageError
from gitian.home import target_bin
from gitian.run import require, run, which
from gitian.ssh import SshConfig, SshTarget
from gitian.targets.base import BaseOptions, TargetConfig

SNAPSHOT = "Gitian-Clean"
VBOXMANAGE = "VBoxManage"
_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}\Z")
_SUITE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_BOX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\Z")
_PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*\Z")
#: packages a VirtualBox base needs on top of SPEC §7's (the box brings its kernel)
VM_EXTRA_PACKAGES = ("openssh-server", "sudo")

# Constant: every value comes from the environment make_base() sets for vagrant.
VAGRANTFILE = """\
# gitian-py: the VirtualBox base (make-base-vm --vbox).  Generated; every value
# comes from the environment that make-base-vm gives vagrant.
Vagrant.configure("2") do |config|
  config.vm.box = ENV.fetch("GITIAN_VAGRANT_BOX")
  config.vm.hostname = "gitian"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.network "forwarded_port", id: "ssh", guest: 22,
    host: Integer(ENV.fetch("GITIAN_SSH_PORT")), host_ip: "127.0.0.1"
  config.vm.provider "virtualbox" do |vb|
    vb.name = ENV.fetch("GITIAN_VM_NAME")
    vb.memory = Integer(ENV.fetch("GITIAN_VM_MEMORY"))
    vb.cpus = Integer(ENV.fetch("GITIAN_VM_CPUS"))
  end
  config.vm.provision "file", source: "id_rsa.pub", destination: "/tmp/gitian-id.pub"
  env = {
    "GITIAN_USER" => ENV.fetch("GITIAN_USER"),
    "GITIAN_PACKAGES" => ENV.fetch("GITIAN_PACKAGES"),
    "GITIAN_CONTAINER" => ENV.fetch("GITIAN_CONTAINER"),
    "GITIAN_SUITE" => ENV.fetch("GITIAN_SUITE"),
    "GITIAN_COMPONENTS" => ENV.fetch("GITIAN_COMPONENTS"),
    "GITIAN_MIRROR" => ENV.fetch("GITIAN_MIRROR", ""),
  }
  config.vm.provision "shell", path: "install-packages", env: env
  config.vm.provision "shell", path: "provision.sh", env: env
  config.vm.provision "shell", path: "bootstrap-fixup", env: env
  config.vm.provision "shell", path: "upgrade-system.sh", env: env
end
"""

PROVISION = """\
#!/bin/sh
# gitian-py: make a Vagrant box a gitian base (runs as root in the VM, after
# install-packages): the build user, and root's SSH key.
set -e
if ! getent passwd "$GITIAN_USER" > /dev/null; then
    useradd --create-home --shell /bin/bash --user-group "$GITIAN_USER"
fi
install -d -m 700 /root/.ssh
install -m 600 /tmp/gitian-id.pub /root/.ssh/authorized_keys
rm -f /tmp/gitian-id.pub
mkdir -p /etc/ssh/sshd_config.d
echo 'PermitRootLogin prohibit-password' > /etc/ssh/sshd_config.d/gitian.conf
"""


def vm_name(suite: str, arch: str) -> str:
    """The classic VM name, ``Gitian-<suite>-<arch>``."""
    return f"Gitian-{suite}-{arch}"


def default_box(distro: str, suite: str, arch: str) -> str:
    return f"{distro}/{suite}{'32' if arch == 'i386' else '64'}"


def parse_machinereadable(text: str) -> dict[str, str]:
    """``showvminfo --machinereadable`` output as a dict (quotes removed)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        key = key.strip().strip('"')
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out[key] = value
    return out


@dataclass(frozen=True)
class VBoxConfig(SshConfig):
    """The VirtualBox backend's own settings."""

    vagrant_box: str | None = None  # GITIAN_VAGRANT_BOX: the box make-base-vm --vbox starts from


class VBoxTarget(SshTarget):
    """A VirtualBox VM restored from its ``Gitian-Clean`` snapshot for each build."""

    name = "vbox"
    config_type: ClassVar[type[TargetConfig]] = VBoxConfig
    config: VBoxConfig

    # -- host checks -------------------------------------------------------
    @classmethod
    def unavailable_reason(
        cls, *, for_base: bool = False, config: TargetConfig | None = None
    ) -> str | None:
        if which(VBOXMANAGE) is None:
            return (
                "VBoxManage is not installed (VirtualBox is not in Debian: install it "
                "from its vendor; note this backend is untested on a real VirtualBox)"
            )
        if for_base:
            if which("vagrant") is None:
                return "vagrant is not installed (apt-get install vagrant)"
            if which("ssh-keygen") is None:
                return "ssh-keygen is missing (apt-get install openssh-client)"
        return None

    # -- names -------------------------------------------------------------
    @property
    def vm(self) -> str:
        return vm_name(self.config.suite, self.config.image_arch)

    def vagrant_dir(self, suite: str, arch: str) -> Path:
        return self.config.home.var / "vagrant" / f"{suite}-{arch}"

    def _vbox(self, *args: str) -> list[str]:
        return [VBOXMANAGE, *args]

    # -- make-base-vm ------------------------------------------------------
    def vagrant_env(self, options: BaseOptions, box: str, workdir: Path) -> dict[str, str]:
        """The environment that carries every value into the Vagrantfile."""
        if not _NAME_RE.match(options.distro):
            raise UsageError(f"--distro {options.distro!r} is not a valid distro/user name")
        if not _SUITE_RE.match(options.suite):
            raise UsageError(f"--suite {options.suite!r} is not a valid suite name")
        if options.arch not in ("amd64", "i386"):
            raise UsageError(f"--arch must be amd64 or i386, not {options.arch!r}")
        if not _BOX_RE.match(box):
            raise UsageError(f"GITIAN_VAGRANT_BOX {box!r} is not a box name")
        packages = list(
            dict.fromkeys(
                [
                    *bootstrap.base_packages(options.distro),
                    *VM_EXTRA_PACKAGES,
                    *options.extra_packages,
                ]
            )
        )
        for p in packages:
            if not _PACKAGE_RE.match(p):
                raise UsageError(f"bad package name {p!r}")
        mirror = bootstrap.choose_mirror(
            options.distro, explicit=options.mirror, mirror_host=self.config.mirror_host
        )
        return {
            "GITIAN_VAGRANT_BOX": box,
            "GITIAN_VM_NAME": vm_name(options.suite, options.arch),
            "GITIAN_VM_MEMORY": str(self.config.memory_mib),
            "GITIAN_VM_CPUS": str(self.config.nprocs),
            "GITIAN_SSH_PORT": str(self.config.ssh_port),
            "GITIAN_PACKAGES": " ".join(packages),
            **bootstrap.fixup_env(
                distro=options.distro,
                suite=options.suite,
                user=options.distro,
                container=False,
                mirror=mirror,
            ),
            # Vagrant works in this directory, and keeps its state there.
            "VAGRANT_CWD": os.fspath(workdir),
        }

    def make_base(self, options: BaseOptions) -> None:
        box = self.config.vagrant_box or default_box(
            options.distro, options.suite, options.arch
        )
        work = self.vagrant_dir(options.suite, options.arch)
        env = self.vagrant_env(options, box, work)
        require(VBOXMANAGE, "vagrant", why="to make a VirtualBox base")
        name = env["GITIAN_VM_NAME"]
        if self._vm_info(name) is not None:
            raise UsageError(
                f"the VirtualBox VM {name} already exists",
                hint=f"remove it first (VBoxManage unregistervm {name} --delete)",
            )
        key = vmimage.ensure_ssh_key(self.config.home)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        (work / "Vagrantfile").write_text(VAGRANTFILE)
        (work / "provision.sh").write_text(PROVISION)
        for script in ("install-packages", "bootstrap-fixup", "upgrade-system.sh"):
            shutil.copyfile(target_bin() / script, work / script)
        shutil.copyfile(key.with_name(key.name + ".pub"), work / "id_rsa.pub")
        with log.step(f"Making the VirtualBox VM {name} with vagrant ({box})"):
            run(["vagrant", "up", "--provider=virtualbox"], env=env, cwd=work)
            run(["vagrant", "halt"], env=env, cwd=work)
        with log.step(f"Taking its snapshot {SNAPSHOT}"):
            run(self._vbox("snapshot", name, "take", SNAPSHOT))
        log.info(f"base ready: VirtualBox VM {name}, snapshot {SNAPSHOT}")

    # -- lifecycle ---------------------------------------------------------
    def _vm_info(self, name: str) -> dict[str, str] | None:
        res = run(
            self._vbox("showvminfo", name, "--machinereadable"), check=False, capture=True
        )
        if res.returncode != 0:
            return None
        return parse_machinereadable((res.stdout or b"").decode("utf-8", "replace"))

    def _state(self) -> str | None:
        info = self._vm_info(self.vm)
        return None if info is None else info.get("VMState", "unknown")

    def has_base(self) -> bool:
        return self.unavailable_reason() is None and self._vm_info(self.vm) is not None

    def _require_vm(self) -> dict[str, str]:
        info = self._vm_info(self.vm)
        if info is None:
            c = self.config
            raise TargetError(
                f"no VirtualBox VM {self.vm}",
                hint=f"make it with: make-base-vm --vbox --distro {c.distro} "
                f"--suite {c.suite} --arch {c.image_arch}",
            )
        return info

    def reset(self) -> None:
        """Restore the snapshot ``Gitian-Clean`` (make-clean-vm).

        A running VM is powered off first (its state is about to be thrown
        away, so there is nothing to save); a snapshot cannot be restored
        while it runs."""
        self.close()
        state = self._require_vm().get("VMState")
        if state in ("running", "paused"):
            run(self._vbox("controlvm", self.vm, "poweroff"))
        run(self._vbox("snapshot", self.vm, "restore", SNAPSHOT))

    def start(self) -> None:
        """``startvm --type headless`` (start-target)."""
        state = self._require_vm().get("VMState")
        if state == "running":
            return
        run(self._vbox("startvm", self.vm, "--type", "headless"))

    def check_alive(self) -> str | None:
        state = self._state()
        if state in ("running", "starting", "restoring"):
            return None
        return f"the VM {self.vm} is {state or 'gone'}"

    def stop(self) -> None:
        """``controlvm savestate`` when the VM runs (stop-target); idempotent."""
        self.close()
        if self._state() in ("running", "paused"):
            run(self._vbox("controlvm", self.vm, "savestate"))
