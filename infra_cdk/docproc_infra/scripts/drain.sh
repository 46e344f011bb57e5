#!/bin/bash
# Graceful scale-in for a worker instance (systemd: docproc-drain.service). The Auto Scaling group's
# termination lifecycle hook holds the instance in Terminating:Wait; this notices it through the instance
# metadata (autoscaling/target-lifecycle-state), stops the container with SIGTERM, which is RQ's warm
# shutdown: the job in hand finishes, no new one is taken; it keeps the hook alive with heartbeats
# meanwhile, and then lets the termination go on. A job that outlives STOP_TIMEOUT is killed and
# requeued by the watchdog.
set -euo pipefail
# shellcheck source=/dev/null
. /etc/docproc/deploy.env

imds() {
  local token
  token=$(curl -sS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sSf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

until [ "$(imds autoscaling/target-lifecycle-state 2>/dev/null || true)" = Terminated ]; do
  sleep 5
done

instance=$(imds instance-id)
group=$(imds tags/instance/aws:autoscaling:groupName)
hook=(--region "$AWS_REGION" --auto-scaling-group-name "$group" --lifecycle-hook-name "$DRAIN_HOOK"
      --instance-id "$instance")
echo "scale-in: stopping docproc-$ROLE (up to ${STOP_TIMEOUT}s for the job in hand)"
docker stop --time "$STOP_TIMEOUT" "docproc-$ROLE" &
stopping=$!
waited=0
while kill -0 "$stopping" 2>/dev/null; do
  sleep 10
  waited=$((waited + 10))
  if [ $((waited % 300)) -eq 0 ]; then
    aws autoscaling record-lifecycle-action-heartbeat "${hook[@]}" || true
  fi
done
wait "$stopping" || true
aws autoscaling complete-lifecycle-action "${hook[@]}" --lifecycle-action-result CONTINUE
# the instance terminates now; stay idle so systemd does not start another round
sleep infinity
