"""The data stores, in the isolated subnets: DocumentDB (file status), ElastiCache for Valkey (the RQ queue),
Aurora PostgreSQL Serverless v2 with pgvector (chunks), the S3 uploads bucket, and the bucket of access logs.

Encryption at rest uses AWS-managed keys throughout (SSE-S3, and DocumentDB's, Aurora's, ElastiCache's and
Secrets Manager's own keys), so there is no KMS key of the stack's own.
"""

from __future__ import annotations

import enum

from aws_cdk import CfnResource, Duration, RemovalPolicy
from aws_cdk import aws_docdb as docdb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.config import Config
from docproc_infra.nag import Acknowledgments, flat
from docproc_infra.network import Network
from docproc_infra.service import S3_PREFIX

DOCDB_ENGINE_VERSION = "5.0.0"
DOCDB_PARAMETER_FAMILY = "docdb5.0"
VALKEY_ENGINE_VERSION = "8.1"
VALKEY_PARAMETER_FAMILY = "valkey8"
AURORA_VERSION = rds.AuroraPostgresEngineVersion.VER_17_7  # pgvector 0.8 with HNSW


def access_log_bucket(scope: Construct) -> s3.Bucket:
    """Where the VPC's flow logs, the uploads bucket's server access logs and the ALB's access logs go."""
    return s3.Bucket(
        scope,
        "LogBucket",
        encryption=s3.BucketEncryption.S3_MANAGED,  # ALB access logs accept SSE-S3 only
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(90))],
        removal_policy=RemovalPolicy.RETAIN,
    )


class UploadsAccess(enum.Enum):
    """What an instance role may do with the objects under the uploads prefix."""

    WRITE = "write"  # the API: writes uploads (multipart), deletes a file's objects (listing them first)
    READ = "read"  # workers: read the uploaded bytes
    SWEEP = "sweep"  # the watchdog: finishes interrupted deletes and sweeps bytes no status document owns


class DataStores(logical_ids.Part):
    """The uploads bucket and the three databases, each with its credentials in Secrets Manager."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        network: Network,
        log_bucket: s3.IBucket,
        nag: Acknowledgments,
    ) -> None:
        super().__init__(scope, construct_id)
        self._nag = nag
        name = config.stack_name.lower()
        self.uploads = s3.Bucket(
            self,
            "Uploads",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=log_bucket,
            server_access_logs_prefix="s3-uploads/",
            lifecycle_rules=[
                s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(1))
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.valkey_secret = secretsmanager.Secret(
            self,
            "ValkeyAuthToken",
            description="docproc: AUTH token of the ElastiCache for Valkey replication group (the RQ queue)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, include_space=False, password_length=64
            ),
        )
        nag.ack(
            self.valkey_secret,
            "AwsSolutions-SMG4",
            "Rotating the Valkey AUTH token needs ElastiCache's two-step ROTATE/SET and an instance refresh "
            "(instances read it at boot); it is a documented runbook step, not an automatic rotation.",
        )
        self.docdb, self.docdb_secret = self._documentdb(f"{name}-docdb", config, network)
        self.valkey = self._valkey(config, network)
        self.aurora, self.aurora_secret = self._aurora(f"{name}-aurora", config, network)

    def grant_access(self, role: iam.IRole, uploads: UploadsAccess) -> None:
        """The uploads a role may touch (under the prefix only), and read access to the three secrets."""
        prefix_objects = self.uploads.arn_for_objects(f"{S3_PREFIX}*")
        list_prefix = iam.PolicyStatement(
            sid="UploadsList",
            actions=["s3:ListBucket"],
            resources=[self.uploads.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [S3_PREFIX, f"{S3_PREFIX}*"]}},
        )
        statements = {
            UploadsAccess.WRITE: [
                iam.PolicyStatement(
                    sid="UploadsWriteDelete",
                    actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                    resources=[prefix_objects],
                ),
                list_prefix,
            ],
            UploadsAccess.READ: [
                iam.PolicyStatement(sid="UploadsRead", actions=["s3:GetObject"], resources=[prefix_objects])
            ],
            UploadsAccess.SWEEP: [
                iam.PolicyStatement(sid="UploadsDelete", actions=["s3:DeleteObject"], resources=[prefix_objects]),
                list_prefix,
            ],
        }[uploads]
        for statement in statements:
            role.add_to_principal_policy(statement)
        self._nag.ack(
            role,
            f"AwsSolutions-IAM5[Resource::{flat(self, prefix_objects)}]",
            "Object keys are created per upload ({file_id}/{name}); the grant is pinned to the bucket's "
            f"{S3_PREFIX} prefix, the narrowest it can be.",
        )
        for secret in (self.docdb_secret, self.valkey_secret, self.aurora_secret):
            secret.grant_read(role)

    def _documentdb(
        self, cluster_id: str, config: Config, network: Network
    ) -> tuple[docdb.DatabaseCluster, secretsmanager.ISecret]:
        params = docdb.ClusterParameterGroup(
            self,
            "DocDbParameters",
            family=DOCDB_PARAMETER_FAMILY,
            description="docproc: TLS required, audit and profiler logs",
            parameters={
                "tls": "enabled",
                "audit_logs": "enabled",
                "profiler": "enabled",
                "profiler_threshold_ms": "500",
            },
        )
        log_groups = [
            logs.LogGroup(
                self,
                f"DocDb{kind.title()}Logs",
                log_group_name=f"/aws/docdb/{cluster_id}/{kind}",
                retention=logs.RetentionDays.ONE_MONTH,
                removal_policy=RemovalPolicy.DESTROY,
            )
            for kind in ("audit", "profiler")
        ]
        cluster = docdb.DatabaseCluster(
            self,
            "DocDb",
            db_cluster_name=cluster_id,
            master_user=docdb.Login(username="docproc"),
            engine_version=DOCDB_ENGINE_VERSION,
            instance_type=ec2.InstanceType(config.docdb_instance_type.removeprefix("db.")),
            instances=config.docdb_instances,
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            security_group=network.docdb_sg,
            port=config.docdb_port,
            parameter_group=params,
            storage_encrypted=True,
            backup=docdb.BackupProps(retention=Duration.days(7), preferred_window="03:00-04:00"),
            preferred_maintenance_window="sun:04:30-sun:05:30",
            deletion_protection=config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            export_audit_logs_to_cloud_watch=True,
            export_profiler_logs_to_cloud_watch=True,
        )
        for lg in log_groups:
            cluster.node.add_dependency(lg)
        assert cluster.secret is not None
        self._nag.ack(
            cluster,
            "AwsSolutions-DOC3",
            "The master username and password are Secrets Manager dynamic references joined with Fn::Join, "
            "which this rule cannot evaluate (it errors); no credential is in the template in plaintext.",
        )
        for log_type in ("authenticate", "createIndex", "dropCollection"):
            self._nag.ack(
                cluster,
                f"AwsSolutions-DOC5[LogExport::{log_type}]",
                f"DocumentDB's log exports are only audit and profiler, both on; {log_type} events are part "
                "of the audit log (audit_logs=enabled), and DocumentDB accepts no export of that name.",
            )
        self._nag.ack(
            cluster.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "DocumentDB credentials are read at instance boot into MONGO_URL; automatic rotation would break "
            "running instances, so rotation is a runbook step followed by an instance refresh.",
        )
        return cluster, cluster.secret

    def _valkey(self, config: Config, network: Network) -> elasticache.CfnReplicationGroup:
        subnets = elasticache.CfnSubnetGroup(
            self,
            "ValkeySubnets",
            description="docproc Valkey: isolated subnets",
            subnet_ids=network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids,
        )
        params = elasticache.CfnParameterGroup(
            self,
            "ValkeyParameters",
            cache_parameter_group_family=VALKEY_PARAMETER_FAMILY,
            description="docproc: noeviction, a full memory refuses writes instead of dropping queued jobs",
            properties={"maxmemory-policy": "noeviction"},
        )
        slow_log = logs.LogGroup(
            self, "ValkeySlowLog", retention=logs.RetentionDays.ONE_MONTH, removal_policy=RemovalPolicy.DESTROY
        )
        nodes = 1 + config.valkey_replicas
        azs = config.availability_zones
        return elasticache.CfnReplicationGroup(
            self,
            "Valkey",
            replication_group_description="docproc: the RQ queue",
            engine="valkey",
            engine_version=VALKEY_ENGINE_VERSION,
            cache_node_type=config.valkey_node_type,
            num_cache_clusters=nodes,
            preferred_cache_cluster_a_zs=[azs[i % len(azs)] for i in range(nodes)],
            automatic_failover_enabled=True,
            multi_az_enabled=True,
            cache_subnet_group_name=subnets.ref,
            cache_parameter_group_name=params.ref,
            security_group_ids=[network.valkey_sg.security_group_id],
            port=config.valkey_port,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            at_rest_encryption_enabled=True,
            auth_token=self.valkey_secret.secret_value.unsafe_unwrap(),  # a dynamic reference, not the value
            snapshot_retention_limit=7,
            snapshot_window="03:00-04:00",
            preferred_maintenance_window="sun:05:00-sun:06:00",
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[
                elasticache.CfnReplicationGroup.LogDeliveryConfigurationRequestProperty(
                    destination_type="cloudwatch-logs",
                    destination_details=elasticache.CfnReplicationGroup.DestinationDetailsProperty(
                        cloud_watch_logs_details=elasticache.CfnReplicationGroup.CloudWatchLogsDestinationDetailsProperty(
                            log_group=slow_log.log_group_name
                        )
                    ),
                    log_format="json",
                    log_type="slow-log",
                )
            ],
        )

    def _aurora(
        self, cluster_id: str, config: Config, network: Network
    ) -> tuple[rds.DatabaseCluster, secretsmanager.ISecret]:
        engine = rds.DatabaseClusterEngine.aurora_postgres(version=AURORA_VERSION)
        log_group = logs.LogGroup(
            self,
            "AuroraLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_id}/postgresql",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        cluster = rds.DatabaseCluster(
            self,
            "Aurora",
            cluster_identifier=cluster_id,
            engine=engine,
            credentials=rds.Credentials.from_generated_secret("docproc"),
            default_database_name="docproc",
            writer=rds.ClusterInstance.serverless_v2("Writer", auto_minor_version_upgrade=True),
            readers=[
                rds.ClusterInstance.serverless_v2(f"Reader{i + 1}", scale_with_writer=True)
                for i in range(config.aurora_readers)
            ],
            serverless_v2_min_capacity=config.aurora_min_acu,
            serverless_v2_max_capacity=config.aurora_max_acu,
            vpc=network.vpc,
            vpc_subnets=network.data_subnets,
            security_groups=[network.aurora_sg],
            port=config.aurora_port,
            storage_encrypted=True,
            iam_authentication=True,
            parameter_group=rds.ParameterGroup(
                self,
                "AuroraParameters",
                engine=engine,
                description="docproc: TLS required",
                parameters={"rds.force_ssl": "1"},
            ),
            backup=rds.BackupProps(retention=Duration.days(7), preferred_window="03:00-04:00"),
            preferred_maintenance_window="sun:05:30-sun:06:30",
            cloudwatch_logs_exports=["postgresql"],
            deletion_protection=config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
        )
        cluster.node.add_dependency(log_group)
        assert cluster.secret is not None
        secret = cluster.node.find_child("Secret")
        # rds.DatabaseSecret names its resource after its path, whose parts logical_id() cannot see
        assert isinstance(secret.node.default_child, CfnResource)
        logical_ids.keep_unique_id_prefix(secret.node.default_child, secret)
        self._nag.ack(
            secret,
            "AwsSolutions-SMG4",
            "Aurora credentials: read at instance boot into DATABASE_URL; rotation is a runbook step "
            "followed by an instance refresh, not an automatic rotation that would break running instances.",
        )
        return cluster, cluster.secret
