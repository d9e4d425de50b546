# Sourced by the real-stack tiers' setup scripts (tools/realstack/libcamera.sh,
# tools/kernelvm/setup.sh): install the Debian packages a tier needs when missing.
#   ensure_debian_packages "what they are" pkg...   (needs `log` defined by the caller)
# Returns 1, naming them, where they are missing and this is not root.
ensure_debian_packages() {
    local what="$1" d
    shift
    local missing=()
    for d in "$@"; do
        dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$d")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -ne 0 ]]; then
        log "missing $what: ${missing[*]} (run as root, or apt-get install them)"
        return 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
}
