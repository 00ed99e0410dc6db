#!/bin/bash
# gitian-py: bring the target's packages up to date; run once when a base is
# made (so every clean target has the marker) and again with gbuild --upgrade.
# SPDX-License-Identifier: GPL-3.0-or-later
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update > /dev/null
apt-get -y -o Dpkg::Options::=--force-confold dist-upgrade
mkdir -p /var/cache/gitian
touch /var/cache/gitian/initial-upgrade
