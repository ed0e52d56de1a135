#!/usr/bin/env bash
# Placeholder until the Ansible side lands: no Molecule scenarios exist yet.
set -euo pipefail
echo "molecule: no scenarios yet"
