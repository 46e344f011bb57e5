"""An Auto Scaling group of instances that all run the one docproc image in one role (api, worker, watchdog).

Each fleet has its own instance role, log group and launch template (IMDSv2, encrypted EBS). Its user data
(scripts/boot.sh) builds the container's settings from Secrets Manager at boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack, Tags
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.config import Config
from docproc_infra.data import DataStores, UploadsAccess
from docproc_infra.nag import Acknowledgments, flat
from docproc_infra.service import API_PORT, DRAIN_HOOK_NAME, METRIC_NAMESPACE, QUEUE_NAME, S3_PREFIX

SCRIPTS = Path(__file__).resolve().parent / "scripts"
INSTANCE_WARMUP = Duration.minutes(5)  # boot, image pull, model load


@dataclass(frozen=True)
class Image:
    repository: ecr.IRepository
    uri: str

    @classmethod
    def in_ecr(cls, scope: Construct, repository_name: str, tag: str) -> Image:
        """An image pushed beforehand to a repository of the stack's account and region."""
        repository = ecr.Repository.from_repository_name(scope, "Repository", repository_name)
        return cls(repository, f"{repository.repository_uri}:{tag}")


@dataclass(frozen=True)
class FleetSpec:
    role: str  # the image's role: api, worker or watchdog
    description: str
    instance_type: str
    min_capacity: int
    max_capacity: int
    stop_timeout: int  # seconds `docker stop` waits for the container
    health_checks: autoscaling.HealthChecks
    uploads: UploadsAccess
    publishes_queue_depth: bool = False  # CLOUDWATCH_METRICS=true, and PutMetricData in its namespace
    drains_on_scale_in: bool = False  # installs scripts/drain.sh for the drain lifecycle hook (scaling.py)


class Fleet(logical_ids.Part):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: FleetSpec,
        config: Config,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        image: Image,
        data: DataStores,
        nag: Acknowledgments,
    ) -> None:
        super().__init__(scope, construct_id)
        name = spec.role.title()  # the ids' prefix: ApiRole, WorkerAsg, ...
        self.role = self._instance_role(f"{name}Role", spec, image, nag)
        data.grant_access(self.role, spec.uploads)
        log_group = logs.LogGroup(
            self, f"{name}Logs", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        log_group.grant_write(self.role)  # its own log group only: the ARN names it
        template = ec2.LaunchTemplate(
            self,
            f"{name}Template",
            machine_image=ec2.MachineImage.latest_amazon_linux2023(cpu_type=ec2.AmazonLinuxCpuType.X86_64),
            instance_type=ec2.InstanceType(spec.instance_type),
            role=self.role,
            security_group=security_group,
            user_data=_user_data(spec, config, image, data, log_group, Stack.of(self).region),
            require_imdsv2=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=2,  # the container reaches IMDS (instance role) through Docker's bridge
            instance_metadata_tags=True,  # drain.sh reads its group's name from the instance tags
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.group = autoscaling.AutoScalingGroup(
            self,
            f"{name}Asg",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template=template,
            min_capacity=spec.min_capacity,
            max_capacity=spec.max_capacity,
            health_checks=spec.health_checks,
            new_instances_protected_from_scale_in=False,  # scale-in is made graceful by the drain hook instead
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1, min_instances_in_service=min(spec.min_capacity, spec.max_capacity - 1)
            ),
            group_metrics=[autoscaling.GroupMetrics.all()],
            default_instance_warmup=INSTANCE_WARMUP,
        )
        Tags.of(self.group).add("docproc:role", spec.role)
        nag.ack(
            self.group,
            "AwsSolutions-AS3",
            "Scaling events are in the group's activity history and on EventBridge (aws.autoscaling); no "
            "subscriber exists by default, so an SNS topic for them is left to the operator.",
        )
        if spec.publishes_queue_depth:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="PublishQueueDepth",
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],  # PutMetricData has no resource type; the condition pins the namespace
                    conditions={"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
                )
            )

    def _instance_role(self, id_: str, spec: FleetSpec, image: Image, nag: Acknowledgments) -> iam.Role:
        ssm = iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
        role = iam.Role(
            self,
            id_,
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=spec.description,
            managed_policies=[ssm],
        )
        nag.ack(
            role,
            f"AwsSolutions-IAM4[Policy::{flat(self, ssm.managed_policy_arn)}]",
            "Session Manager instead of SSH (no key pairs, no port 22): AmazonSSMManagedInstanceCore is the "
            "AWS-maintained minimum for it.",
        )
        image.repository.grant_pull(role)
        nag.ack(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "ECR's GetAuthorizationToken has no resource type (AWS requires Resource *); pulling layers is "
            "granted on the one repository"
            + (
                ", and cloudwatch:PutMetricData, also without a resource type, is pinned by condition to the "
                f"{METRIC_NAMESPACE} namespace."
                if spec.publishes_queue_depth
                else "."
            ),
        )
        return role


def _user_data(
    spec: FleetSpec, config: Config, image: Image, data: DataStores, log_group: logs.ILogGroup, region: str
) -> ec2.UserData:
    deploy_env = {
        "ROLE": spec.role,
        "AWS_REGION": region,
        "IMAGE": image.uri,
        "LOG_GROUP": log_group.log_group_name,
        "STOP_TIMEOUT": str(spec.stop_timeout),
        "API_PORT": str(API_PORT),
        "API_WORKERS": str(config.api_workers),
        "S3_BUCKET": data.uploads.bucket_name,
        "S3_PREFIX": S3_PREFIX,
        "QUEUE_NAME": QUEUE_NAME,
        "MONGO_SECRET_ARN": data.docdb_secret.secret_arn,
        "VALKEY_SECRET_ARN": data.valkey_secret.secret_arn,
        "VALKEY_HOST": data.valkey.attr_primary_end_point_address,
        "VALKEY_PORT": data.valkey.attr_primary_end_point_port,
        "POSTGRES_SECRET_ARN": data.aurora_secret.secret_arn,
        "CLOUDWATCH_METRICS": "true" if spec.publishes_queue_depth else "false",
        "DRAIN_HOOK": DRAIN_HOOK_NAME,
    }
    user_data = ec2.UserData.for_linux()
    lines = ["set -euo pipefail", "install -d -m 0755 /etc/docproc /opt/docproc"]
    lines.append("cat > /etc/docproc/deploy.env <<'DOCPROC_ENV'\n" + _env_lines(deploy_env) + "DOCPROC_ENV")
    scripts = ["boot.sh"] + (["drain.sh"] if spec.drains_on_scale_in else [])
    for script in scripts:
        body = (SCRIPTS / script).read_text()
        lines.append(f"cat > /opt/docproc/{script} <<'DOCPROC_SCRIPT'\n{body}DOCPROC_SCRIPT")
    lines += ["chmod 0755 /opt/docproc/*.sh", "/opt/docproc/boot.sh"]
    user_data.add_commands(*lines)
    return user_data


def _env_lines(values: dict[str, str]) -> str:
    """KEY=value lines for deploy.env; values may be CloudFormation tokens (resolved before boot)."""
    return "".join(f"{key}={value}\n" for key, value in values.items())
