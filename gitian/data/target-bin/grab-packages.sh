#!/bin/bash
# gitian-py: print "sha256  file.deb" for the .deb of every INSTALLED package,
# sorted by file name (the base manifest).  Runs as root.
# SPDX-License-Identifier: GPL-3.0-or-later
#
# /var/cache/apt/archives may be a cache shared with other builds holding
# other packages and versions; only the files named after an installed
# package's Package_Version_Architecture.deb are hashed (apt writes an epoch's
# ':' as %3a).  Missing ones are downloaded (needs the network).
set -e -o pipefail
export LC_ALL=C
cd /var/cache/apt/archives

installed=$(dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}=${Version} ${Package}_${Version}_${Architecture}.deb\n' \
    | awk '$1 == "ii" { sub(/:/, "%3a", $3); print $2, $3 }')

missing=$(printf '%s\n' "$installed" | while read -r spec file; do
    [ -n "$file" ] && [ ! -f "$file" ] && printf '%s\n' "$spec"
done || true)
if [ -n "$missing" ]; then
    printf '%s\n' "$missing" | xargs -r -n 50 \
        apt-get install --reinstall --download-only -y -q -o APT::Keep-Downloaded-Packages=true > /dev/null
fi

printf '%s\n' "$installed" | while read -r spec file; do
    if [ ! -f "$file" ]; then
        echo "grab-packages.sh: no .deb for installed package $spec ($file)" >&2
        exit 1
    fi
    printf '%s\n' "$file"
done | sort -u | xargs -r -d '\n' sha256sum -- | sort -k 2
