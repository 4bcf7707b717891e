#!/bin/bash
#
# First boot of a tritonctl zone (run by the zone's user-script, as Triton's
# core zones run their boot/setup.sh). Idempotent: running it again changes
# nothing that is already in place.
#
# What it does:
#   1. the common Triton zone setup (/opt/smartdc/boot/lib/util.sh:
#      sdc_common_setup), which starts config-agent with this zone's
#      sapi_manifests/tritonctl, so /opt/smartdc/tritonctl/etc/config.json
#      is rendered from SAPI metadata;
#   2. checks the rendered configuration with the binary itself
#      (`tritonctl controller --config FILE --check-config`): an invalid
#      one stops the setup here, naming the key and the reason;
#   3. log rotation of the SMF log (logadm, through sdc_log_rotation_add);
#   4. imports smf/manifests/tritonctl.xml and enables the service.
#
# Outside a Triton zone (no util.sh), steps 1 and 3 are skipped: the script
# then only checks the configuration and imports the manifest, and fails
# if svccfg is missing (use deploy/tritonctl.service on systemd hosts).

export PS4='[\D{%FT%TZ}] ${BASH_SOURCE}:${LINENO}: ${FUNCNAME[0]:+${FUNCNAME[0]}(): }'
set -o xtrace
# No errexit: Triton's util.sh functions are not written for it; each
# step that matters is checked.

ROLE=tritonctl
SVC_ROOT=${TRITONCTL_ROOT:-/opt/smartdc/tritonctl}
CONFIG=$SVC_ROOT/etc/config.json
BIN=$SVC_ROOT/bin/tritonctl
MANIFEST=$SVC_ROOT/smf/manifests/tritonctl.xml
UTIL=${TRITONCTL_BOOT_UTIL:-/opt/smartdc/boot/lib/util.sh}

fatal() {
    echo "setup.sh: $*" >&2
    exit 1
}

[[ -x $BIN ]] || fatal "$BIN is missing or not executable: is this a tritonctl image?"

mkdir -p "$SVC_ROOT/etc" /var/smartdc/$ROLE || fatal "cannot create $SVC_ROOT/etc"

# config-agent renders from these directories.
export CONFIG_AGENT_LOCAL_MANIFESTS_DIRS="$SVC_ROOT"

if [[ -f $UTIL ]]; then
    # shellcheck disable=SC1090
    source "$UTIL"
    sdc_common_setup
fi

# config-agent has rendered the configuration by now (sdc_common_setup
# waits for its first run); refuse to go on with none or a bad one.
[[ -f $CONFIG ]] || fatal "$CONFIG was not rendered: check config-agent (svcs -xv config-agent) and the tritonctl service's SAPI metadata"
"$BIN" controller --config "$CONFIG" --check-config >/dev/null ||
    fatal "$CONFIG is not a configuration the controller accepts (reason above)"

if declare -F sdc_log_rotation_add >/dev/null; then
    sdc_log_rotation_add $ROLE "/var/svc/log/*$ROLE*.log" 1g
    sdc_log_rotation_setup_end
fi

command -v svccfg >/dev/null || fatal "svccfg not found: this script sets up an SMF zone; on systemd use deploy/tritonctl.service"
svccfg import "$MANIFEST" || fatal "could not import $MANIFEST"
svcadm enable $ROLE || fatal "could not enable $ROLE"

if declare -F sdc_setup_complete >/dev/null; then
    sdc_setup_complete
fi

exit 0
