#!/bin/bash
# First boot of a docproc instance (Amazon Linux 2023), run from the launch template's user data after it
# has written /etc/docproc/deploy.env (role, image, secret ARNs, endpoints). It installs Docker, turns the
# Secrets Manager secrets into the container's settings (/etc/docproc/app.env, root only), pulls the image
# from ECR and starts the role's container; Docker restarts it if it dies, and after a reboot.
set -euo pipefail
# shellcheck source=/dev/null
. /etc/docproc/deploy.env

imds() {  # IMDSv2 only
  local token
  token=$(curl -sS -X PUT http://169.254.169.254/latest/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sSf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
retry() {  # retry <command...>: the network and the registry may need a moment after boot
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do "$@" && return 0; echo "retry $i: $*" >&2; sleep $((i * 3)); done
  return 1
}
secret() {
  aws secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$1" --query SecretString --output text
}

retry dnf install -y -q docker
systemctl enable --now docker

umask 077
MONGO_SECRET=$(retry secret "$MONGO_SECRET_ARN")
VALKEY_SECRET=$(retry secret "$VALKEY_SECRET_ARN")
POSTGRES_SECRET=""
[ -z "${POSTGRES_SECRET_ARN:-}" ] || POSTGRES_SECRET=$(retry secret "$POSTGRES_SECRET_ARN")
export MONGO_SECRET VALKEY_SECRET POSTGRES_SECRET AWS_REGION S3_BUCKET S3_PREFIX QUEUE_NAME VALKEY_HOST \
  VALKEY_PORT API_WORKERS CLOUDWATCH_METRICS
python3 - > /etc/docproc/app.env <<'PY'
import json
import os
from urllib.parse import quote

e = os.environ
ca = "/etc/ssl/certs/rds-global-bundle.pem"  # baked into the image
settings = {
    "STORAGE": "s3",
    "S3_BUCKET": e["S3_BUCKET"],
    "S3_PREFIX": e["S3_PREFIX"],
    "S3_REGION": e["AWS_REGION"],
    "AWS_DEFAULT_REGION": e["AWS_REGION"],
    "QUEUE_NAME": e["QUEUE_NAME"],
    "MONGO_DB": "docproc",
    "API_WORKERS": e["API_WORKERS"],
    "FORWARDED_ALLOW_IPS": "*",  # only the load balancer reaches the API port
    "CLOUDWATCH_METRICS": e["CLOUDWATCH_METRICS"],
    "AUTH": "enabled",  # API keys (python -m app.keys create ... inside the API container makes the first)
}
m = json.loads(e["MONGO_SECRET"])
settings["MONGO_URL"] = (
    f"mongodb://{quote(m['username'], safe='')}:{quote(m['password'], safe='')}@{m['host']}:{m['port']}/"
    f"?tls=true&tlsCAFile={ca}&retryWrites=false&replicaSet=rs0&readPreference=secondaryPreferred"
)
token = quote(e["VALKEY_SECRET"], safe="")
settings["VALKEY_URL"] = f"rediss://:{token}@{e['VALKEY_HOST']}:{e['VALKEY_PORT']}/0"
if e.get("POSTGRES_SECRET"):
    p = json.loads(e["POSTGRES_SECRET"])
    settings["DATABASE_URL"] = (
        f"postgresql://{quote(p['username'], safe='')}:{quote(p['password'], safe='')}@{p['host']}:{p['port']}/"
        f"{p.get('dbname', 'docproc')}?sslmode=verify-full&sslrootcert={ca}"
    )
for key, value in settings.items():
    print(f"{key}={value}")
PY
unset MONGO_SECRET VALKEY_SECRET POSTGRES_SECRET
umask 022

registry=${IMAGE%%/*}
retry sh -c "aws ecr get-login-password --region '$AWS_REGION' | docker login --username AWS --password-stdin '$registry'"
retry docker pull -q "$IMAGE"

install -d -o 10001 -g 10001 -m 0750 /var/lib/docproc  # the image's user; DATA_DIR: the S3 upload spool
args=(
  --detach --name "docproc-$ROLE" --restart unless-stopped
  --env-file /etc/docproc/app.env
  --volume /var/lib/docproc:/data
  --stop-timeout "$STOP_TIMEOUT"
  --log-driver awslogs
  --log-opt "awslogs-region=$AWS_REGION"
  --log-opt "awslogs-group=$LOG_GROUP"
  --log-opt "awslogs-stream=$ROLE/$(imds instance-id)"
)
[ "$ROLE" != api ] || args+=(--publish "$API_PORT:8000")
docker rm -f "docproc-$ROLE" >/dev/null 2>&1 || true
docker run "${args[@]}" "$IMAGE" "$ROLE"

if [ "$ROLE" = worker ]; then
  # hold the instance's termination until the worker has finished its job (drain.sh)
  cat > /etc/systemd/system/docproc-drain.service <<'UNIT'
[Unit]
Description=docproc: finish the job in hand before the Auto Scaling group terminates this instance
After=docker.service
Requires=docker.service

[Service]
ExecStart=/opt/docproc/drain.sh
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now docproc-drain.service
fi
