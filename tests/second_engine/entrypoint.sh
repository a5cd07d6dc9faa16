#!/bin/sh
# serve: start dockerd in the background, then run sshd in the foreground.
# start / stop: start or stop dockerd alone (sshd stays up), for "engine stopped" tests.
# The harness puts /etc/second-engine/{ca.pem,server-cert.pem,server-key.pem,authorized_keys} in first.
set -eu
conf=/etc/second-engine
pidfile=/var/run/docker.pid

writable_system() {
    # Not --privileged (see engine.py): /sys and the cgroup v1 hierarchies come read-only; with
    # CAP_SYS_ADMIN they can be made writable, which dockerd needs for its containers' cgroups.
    mount -o remount,rw /sys 2>/dev/null || true
    for hierarchy in /sys/fs/cgroup/*; do
        mountpoint -q "$hierarchy" && mount -o remount,bind,rw "$hierarchy" 2>/dev/null || true
    done
}

start() {
    # What docker's own dind script does: shared mounts for volumes, securityfs for AppArmor probes.
    mount --make-rshared /
    mountpoint -q /sys/kernel/security || mount -t securityfs none /sys/kernel/security || true
    setsid dockerd \
        --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2376 \
        --tlsverify --tlscacert="$conf/ca.pem" --tlscert="$conf/server-cert.pem" --tlskey="$conf/server-key.pem" \
        --storage-driver=overlay2 --pidfile="$pidfile" \
        </dev/null >>/var/log/dockerd.log 2>&1 &
}

stop() {
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    # dockerd removes its pidfile once it has shut down (and its managed containerd with it).
    i=0
    while [ -f "$pidfile" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    rm -f "$pidfile" /var/run/docker.sock
}

case "${1:-serve}" in
    serve)
        ssh-keygen -A >/dev/null
        install -d -m 700 /root/.ssh
        install -m 600 "$conf/authorized_keys" /root/.ssh/authorized_keys
        mkdir -p /run/sshd
        writable_system
        start
        exec /usr/sbin/sshd -D -e -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
            -o PermitRootLogin=prohibit-password ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: second-engine [serve|start|stop]" >&2; exit 2 ;;
esac
