#!/bin/sh
# Builds the OpenStack virtualenv from openstack/constraints.txt (if missing), installs
# xenstack-nova into it and runs openstack/tests in both of nova's concurrency modes
# (eventlet, then native threads). The toolstack runs from the project's own interpreter
# (XENSTACK_PYTHON, default .venv/bin/python), reached over the wire only.
#   OPENSTACK_VENV   the virtualenv (default /work/venvs/openstack if it exists, else
#                    .venv-openstack in the repository)
set -eu
cd "$(dirname "$0")/../.."
repo=$(pwd)
if [ -z "${OPENSTACK_VENV:-}" ]; then
    if [ -d /work/venvs/openstack ]; then OPENSTACK_VENV=/work/venvs/openstack
    else OPENSTACK_VENV=$repo/.venv-openstack; fi
fi
export XENSTACK_PYTHON="${XENSTACK_PYTHON:-$repo/.venv/bin/python}"
[ -x "$OPENSTACK_VENV/bin/python" ] || python3 -m venv "$OPENSTACK_VENV"
"$OPENSTACK_VENV/bin/pip" install -q -c openstack/constraints.txt \
    nova glance neutron openstack-placement gunicorn XenAPI \
    ddt fixtures oslotest osprofiler requests-mock stestr testresources testscenarios \
    testtools wsgi-intercept
"$OPENSTACK_VENV/bin/pip" install -q --no-deps ./openstack
rm -rf openstack/build openstack/*.egg-info
cd openstack/tests
modules="test_generic test_functional test_images test_local_dev test_vif test_driver test_root_helper test_agent"
# real guests (a qemu host, as root) once, in native threading mode (eventlet's is deprecated):
# the driver's contract runs in both modes above them, and a guest's boot is the slow part
guests="test_functional_guest test_neutron.NeutronAgentGuestTest"
echo "openstack tests, eventlet mode"
"$OPENSTACK_VENV/bin/python" -m testtools.run $modules test_neutron.NeutronAgentTest
echo "openstack tests, native threading mode, real guests included"
OS_NOVA_DISABLE_EVENTLET_PATCHING=1 "$OPENSTACK_VENV/bin/python" -m testtools.run $modules \
    test_neutron.NeutronAgentTest $guests
