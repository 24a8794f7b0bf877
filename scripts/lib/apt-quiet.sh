# apt-get install for the install-*.sh scripts, with the packages' daemons kept from starting.
# Sourced, not executed.

# apt_install_without_starting SUDO PACKAGE...: installs PACKAGE... (no recommends: those would
# start more daemons nobody asked for) while a policy-rc.d refuses every service start; the
# policy is removed when the calling script exits, unless one was there before. SUDO is "sudo"
# or empty when running as root.
apt_install_without_starting() {
  local sudo=$1 policy=/usr/sbin/policy-rc.d
  shift
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\nexit 101\n' | ${sudo} tee "${policy}" >/dev/null
    ${sudo} chmod 0755 "${policy}"
    # shellcheck disable=SC2064  # the policy and the sudo of this call, fixed now
    trap "${sudo} rm -f '${policy}'" EXIT
  fi
  ${sudo} apt-get update -qq
  DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends "$@" >&2
}
