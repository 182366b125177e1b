#!/usr/bin/env bash
# local_slurm.sh - a throw-away single-node SLURM cluster on this machine, for
# testing emreason's SLURM launcher (hydra/launcher=slurm) end to end.
#
# Usage (as root, Debian/Ubuntu, no systemd needed):
#   launchers/local_slurm.sh start    # install slurm + munge if missing, write
#                                     # /etc/slurm/slurm.conf, start munged,
#                                     # slurmctld, slurmd; wait for the node
#   launchers/local_slurm.sh status   # is each daemon running? + sinfo
#   launchers/local_slurm.sh stop     # cancel jobs, stop slurmd, slurmctld, munged
#
# The cluster: one node (this host, `hostname -s`, reached on 127.0.0.1) with
# CPUs = nproc and RealMemory = 95% of `free -m`, one partition (default
# "local", or $EMREASON_SLURM_PARTITION) marked Default=YES, no accounting
# (sacct prints a harmless error; submitit copes), proctrack/linuxproc,
# task/none, memory not a consumable resource.  Jobs run as the submitting
# user, on this machine, with the submitter's environment (sbatch --export=ALL).
#
# Environment:
#   EMREASON_SLURM_PARTITION      partition name            (default: local)
#   EMREASON_SLURM_GPUS           GPUs to declare as gres gpu:N on the node,
#                                 from /dev/nvidia0.. (default: 0; untested)
#   EMREASON_SLURM_STATE_DIR      spool/state directory     (default: /var/spool/emreason-slurm)
#   EMREASON_SLURM_LOG_DIR        daemon logs               (default: /var/log/emreason-slurm)
#   EMREASON_SLURM_START_TIMEOUT  seconds to wait for the node to be idle (default: 120)
#   EMREASON_SLURM_FORCE=1        overwrite an /etc/slurm/slurm.conf not written by this script
#
# Exit codes:
#   start:  0 cluster up (node idle), 1 a daemon or the node failed to come up,
#           4 not root / no apt-get, 5 package install failed, 6 foreign slurm.conf
#   stop:   0 nothing left running, 1 something still runs
#   status: 0 all three daemons run and the node answers, 1 partly running or
#           node not usable, 3 stopped (or slurm not installed)
#   2 usage error
set -uo pipefail

PARTITION="${EMREASON_SLURM_PARTITION:-local}"
GPUS="${EMREASON_SLURM_GPUS:-0}"
STATE_DIR="${EMREASON_SLURM_STATE_DIR:-/var/spool/emreason-slurm}"
LOG_DIR="${EMREASON_SLURM_LOG_DIR:-/var/log/emreason-slurm}"
START_TIMEOUT="${EMREASON_SLURM_START_TIMEOUT:-120}"
RUN_DIR=/run/emreason-slurm
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARKER="# Written by emreason launchers/local_slurm.sh"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PIDFILE=/run/munge/munged.pid
CTLD_PIDFILE="$RUN_DIR/slurmctld.pid"
SLURMD_PIDFILE="$RUN_DIR/slurmd.pid"
APT_PACKAGES=(munge slurmctld slurmd slurm-client)

# Debian puts the daemons in /usr/sbin, which a non-login root shell may lack.
export PATH="$PATH:/usr/sbin:/sbin"

log() { printf '[local_slurm] %s\n' "$*" >&2; }
die() { local code="$1"; shift; log "ERROR: $*"; exit "$code"; }

node_name() {
  local n
  n="$(hostname -s 2>/dev/null)" || n=""
  [[ -n "$n" ]] || n="$(uname -n)"
  printf '%s\n' "${n%%.*}"
}
NODE="$(node_name)"

# --- process helpers ---------------------------------------------------------

# pid_from_file FILE NAME: print the pid in FILE if that process runs and is NAME.
pid_from_file() {
  local file="$1" name="$2" pid comm
  [[ -r "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [[ "$comm" == "$name" ]] || return 1
  printf '%s\n' "$pid"
}

# daemon_pid NAME PIDFILE: pid of a running daemon (pidfile first, then by
# exact process name, so one started some other way is still seen).
daemon_pid() {
  local name="$1" file="$2" pid
  if pid="$(pid_from_file "$file" "$name")"; then printf '%s\n' "$pid"; return 0; fi
  pid="$(pgrep -x "$name" 2>/dev/null | head -n1)"
  [[ -n "$pid" ]] || return 1
  printf '%s\n' "$pid"
}

munged_pid() { daemon_pid munged "$MUNGE_PIDFILE"; }
ctld_pid() { daemon_pid slurmctld "$CTLD_PIDFILE"; }
slurmd_pid() { daemon_pid slurmd "$SLURMD_PIDFILE"; }

# stop_pid NAME PID: SIGTERM, wait up to 20 s, then SIGKILL.
stop_pid() {
  local name="$1" pid="$2" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 40; i++)); do
    [[ -d "/proc/$pid" ]] || { log "$name (pid $pid) stopped"; return 0; }
    sleep 0.5
  done
  log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null
  sleep 1
  [[ ! -d "/proc/$pid" ]]
}

log_tail() {
  local f
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    printf -- '----- last lines of %s -----\n' "$f" >&2
    tail -n 20 "$f" >&2
  done
}

all_logs() { log_tail "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; }

# --- install -----------------------------------------------------------------

installed() {
  command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 &&
    command -v sinfo >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1 &&
    command -v munged >/dev/null 2>&1 && command -v munge >/dev/null 2>&1
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  local apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  local need_update=0 pkg cand
  for pkg in "${APT_PACKAGES[@]}"; do
    cand="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [[ -z "$cand" || "$cand" == "(none)" ]]; then need_update=1; fi
  done
  # Keep the package scripts from starting daemons (munge's init script would):
  # this script starts them itself.  Only when no policy-rc.d is in place.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  local rc=0
  if ((need_update)); then
    log "apt-get update (package lists lack ${APT_PACKAGES[*]})"
    apt-get update -q -o DPkg::Lock::Timeout=300 >&2 || rc=$?
  fi
  if ((rc == 0)); then
    log "apt-get install ${APT_PACKAGES[*]}"
    if ! apt-get install "${apt_opts[@]}" "${APT_PACKAGES[@]}" >&2; then
      if ((need_update)); then
        rc=1
      else
        # Stale lists (404 on a superseded .deb): refresh once and retry.
        log "install failed; apt-get update and retry"
        apt-get update -q -o DPkg::Lock::Timeout=300 >&2 &&
          apt-get install "${apt_opts[@]}" "${APT_PACKAGES[@]}" >&2 || rc=1
      fi
    fi
  fi
  ((made_policy)) && rm -f "$policy"
  return "$rc"
}

# --- configuration -----------------------------------------------------------

render_conf() {
  local cpus mem_mb gres_line="" node_gres=""
  cpus="$(nproc)"
  mem_mb="$(free -m | awk '/^Mem:/ {print int($2 * 0.95)}')"
  if [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    gres_line="GresTypes=gpu"
    node_gres=" Gres=gpu:$GPUS"
  fi
  cat <<EOF
$MARKER - single-node test cluster.
# Regenerated on every 'start'; edits are lost.  Remove this file (after
# 'stop') to hand /etc/slurm back to a real configuration.
ClusterName=emreason-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
JobRequeue=1
$gres_line
# no accounting, no job completion log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# timers (seconds)
SlurmctldTimeout=120
SlurmdTimeout=300
InactiveLimit=0
MinJobAge=300
KillWait=30
Waittime=0
MessageTimeout=30
# paths
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$CTLD_PIDFILE
SlurmdPidFile=$SLURMD_PIDFILE
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# the node and its partition
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$NODE CPUs=$cpus RealMemory=$mem_mb$node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

write_gres_conf() {
  local f="$CONF_DIR/gres.conf"
  if [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    printf '%s\nName=gpu File=/dev/nvidia[0-%d]\n' "$MARKER" "$((GPUS - 1))" >"$f"
  elif [[ -f "$f" ]] && grep -qF "$MARKER" "$f"; then
    rm -f "$f"
  fi
}

# --- munge -------------------------------------------------------------------

ensure_munge_key() {
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
  install -d -o munge -g munge -m 0755 /run/munge
  if [[ ! -s "$MUNGE_KEY" ]]; then
    log "creating munge key $MUNGE_KEY"
    if command -v mungekey >/dev/null 2>&1; then
      mungekey --create --keyfile="$MUNGE_KEY" >&2 || return 1
    else
      dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none || return 1
    fi
  fi
  chown munge:munge "$MUNGE_KEY" && chmod 0400 "$MUNGE_KEY"
}

start_munged() {
  local pid i
  if pid="$(munged_pid)"; then
    log "munged already running (pid $pid)"
  else
    ensure_munge_key || die 1 "could not create $MUNGE_KEY"
    log "starting munged as user munge"
    runuser -u munge -- munged >&2 || { all_logs; die 1 "munged failed to start"; }
  fi
  for ((i = 0; i < 20; i++)); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  all_logs
  die 1 "munge credentials do not round-trip (munge -n | unmunge failed)"
}

# --- start / stop / status ---------------------------------------------------

node_state() { sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null | head -n1; }

wait_node_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) state="" resumed=0
  while ((SECONDS < deadline)); do
    state="$(node_state)"
    case "$state" in
      idle | mixed | allocated | completing)
        log "node $NODE is $state in partition $PARTITION"
        return 0 ;;
      down | drained | draining | drain | fail | failing)
        # e.g. "down" after an unclean restart: resume it once.
        if ((resumed == 0)); then
          log "node $NODE is $state; resuming it"
          scontrol update NodeName="$NODE" State=RESUME >&2 || true
          resumed=1
        fi ;;
    esac
    if ! ctld_pid >/dev/null; then break; fi
    if ! slurmd_pid >/dev/null; then break; fi
    sleep 1
  done
  log "node $NODE not ready after ${START_TIMEOUT}s (state: '${state:-no answer}')"
  sinfo -R >&2 2>/dev/null || true
  ctld_pid >/dev/null || log "slurmctld is not running"
  slurmd_pid >/dev/null || log "slurmd is not running"
  all_logs
  return 1
}

cmd_start() {
  [[ "$(id -u)" == 0 ]] || die 4 "start must run as root (it installs packages and starts daemons)"
  if ! installed; then
    command -v apt-get >/dev/null 2>&1 || die 4 "slurm/munge are not installed and apt-get is not available"
    local t0=$SECONDS
    apt_install || die 5 "apt-get install ${APT_PACKAGES[*]} failed"
    installed || die 5 "packages installed but slurmctld/slurmd/sinfo/munged still missing"
    log "installed ${APT_PACKAGES[*]} in $((SECONDS - t0))s"
  fi

  if [[ -f "$CONF" ]] && ! grep -qF "$MARKER" "$CONF" && [[ "${EMREASON_SLURM_FORCE:-0}" != 1 ]]; then
    die 6 "$CONF exists and was not written by this script (set EMREASON_SLURM_FORCE=1 to overwrite)"
  fi

  mkdir -p "$CONF_DIR" "$RUN_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"
  local new_conf
  new_conf="$(render_conf)"
  if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$new_conf" ]]; then
    if ctld_pid >/dev/null || slurmd_pid >/dev/null; then
      log "slurm.conf changes: restarting slurm daemons"
      stop_slurm_daemons
    fi
    printf '%s\n' "$new_conf" >"$CONF"
    chmod 0644 "$CONF"
    log "wrote $CONF (node $NODE, $(nproc) CPUs, partition $PARTITION)"
  fi
  write_gres_conf

  start_munged

  local pid
  if pid="$(ctld_pid)"; then
    log "slurmctld already running (pid $pid)"
  else
    log "starting slurmctld"
    slurmctld >&2 || { all_logs; die 1 "slurmctld failed to start"; }
  fi
  # slurmctld must answer before slurmd registers.
  local i
  for ((i = 0; i < 30; i++)); do
    scontrol ping 2>/dev/null | grep -q 'UP' && break
    sleep 1
  done
  if pid="$(slurmd_pid)"; then
    log "slurmd already running (pid $pid)"
  else
    log "starting slurmd"
    slurmd -N "$NODE" >&2 || { all_logs; die 1 "slurmd failed to start"; }
  fi
  wait_node_ready || exit 1
  sinfo
}

# Cancel jobs, then stop slurmd and slurmctld.  Returns non-zero if one survives.
stop_slurm_daemons() {
  local pid i ok=0
  if ctld_pid >/dev/null && scontrol ping 2>/dev/null | grep -q UP; then
    local jobs
    jobs="$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')"
    if [[ -n "${jobs// /}" ]]; then
      log "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for ((i = 0; i < 60; i++)); do
        [[ -z "$(squeue -h -o '%A' 2>/dev/null)" ]] && break
        sleep 1
      done
    fi
  fi
  if pid="$(slurmd_pid)"; then stop_pid slurmd "$pid" || ok=1; fi
  if pid="$(ctld_pid)"; then stop_pid slurmctld "$pid" || ok=1; fi
  return "$ok"
}

cmd_stop() {
  local pid ok=0
  if ! ctld_pid >/dev/null && ! slurmd_pid >/dev/null && ! munged_pid >/dev/null; then
    log "nothing running"
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die 4 "stop must run as root"
  stop_slurm_daemons || ok=1
  if pid="$(munged_pid)"; then stop_pid munged "$pid" || ok=1; fi
  # Anything left?
  for name in slurmd slurmctld munged; do
    if pid="$(daemon_pid "$name" /nonexistent)"; then
      log "$name still running (pid $pid)"
      ok=1
    fi
  done
  if pgrep -x slurmstepd >/dev/null 2>&1; then
    log "slurmstepd processes still running: $(pgrep -x slurmstepd | tr '\n' ' ')"
    ok=1
  fi
  ((ok == 0)) && log "stopped"
  return "$ok"
}

cmd_status() {
  local pid running=0 name fn
  if ! installed; then
    echo "slurm/munge are not installed: local cluster stopped"
    return 3
  fi
  for name in munged slurmctld slurmd; do
    case "$name" in
      munged) fn=munged_pid ;; slurmctld) fn=ctld_pid ;; slurmd) fn=slurmd_pid ;;
    esac
    if pid="$($fn)"; then
      printf '%-10s running (pid %s)\n' "$name:" "$pid"
      running=$((running + 1))
    else
      printf '%-10s not running\n' "$name:"
    fi
  done
  if ((running == 0)); then
    echo "local cluster stopped"
    return 3
  fi
  local state
  state="$(node_state)"
  sinfo 2>&1 || true
  if ((running == 3)) && [[ "$state" =~ ^(idle|mixed|allocated|completing)$ ]]; then
    echo "local cluster running: node $NODE $state"
    return 0
  fi
  echo "local cluster partly running or unhealthy (node $NODE: '${state:-no answer}')"
  return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2 ;;
esac
