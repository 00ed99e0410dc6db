#!/bin/sh
# gitian-py: a fresh build area in the build user's home.
# SPDX-License-Identifier: GPL-3.0-or-later
set -e
cd "$HOME"
rm -rf build out install cache/common
mkdir -p build out install cache/common
