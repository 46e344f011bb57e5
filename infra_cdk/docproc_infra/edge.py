"""The way in: the ALB in front of the API fleet, optionally CloudFront in front of it, and Route 53 aliases."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from docproc_infra import logical_ids
from docproc_infra.config import Config
from docproc_infra.fleet import Fleet
from docproc_infra.nag import Acknowledgments
from docproc_infra.network import Network
from docproc_infra.service import API_PORT


class LoadBalancer(logical_ids.Part):
    """The internet-facing ALB to the API fleet: HTTPS with certificateArn (HTTP redirected), else HTTP.
    Behind CloudFront it forwards only what Cdn's rule lets through; otherwise everything."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        network: Network,
        api: Fleet,
        log_bucket: s3.IBucket,
        nag: Acknowledgments,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=network.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=network.alb_sg,
            drop_invalid_header_fields=True,
            idle_timeout=Duration.seconds(120),  # large uploads over slow links
        )
        self.alb.log_access_logs(log_bucket, "alb")
        peer = ec2.Peer.ipv4(config.allowed_cidr)
        for port in [443, 80] if config.https else [80]:
            network.alb_sg.add_ingress_rule(peer, ec2.Port.tcp(port), f"HTTP{'S' if port == 443 else ''} from clients")
        if config.allowed_cidr == "0.0.0.0/0":
            nag.ack(
                network.alb_sg,
                "AwsSolutions-EC23",
                "The public API's load balancer: clients connect from anywhere (narrow with -c allowedCidr=...).",
            )

        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "ApiTargets",
            vpc=network.vpc,
            port=API_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[api.group],
            deregistration_delay=Duration.seconds(60),
            health_check=elbv2.HealthCheck(
                path="/health",
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        # behind CloudFront the default is 403: Cdn adds the rule that forwards its requests
        default_target_groups = None if config.cloudfront else [self.target_group]
        default_action = elbv2.ListenerAction.fixed_response(403) if config.cloudfront else None
        if config.https:
            assert config.certificate_arn is not None
            self.listener = self.alb.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(config.certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                open=False,
                default_target_groups=default_target_groups,
                default_action=default_action,
            )
            self.alb.add_redirect(source_port=80, target_port=443, open=False)
        else:
            self.listener = self.alb.add_listener(
                "Http",
                port=80,
                protocol=elbv2.ApplicationProtocol.HTTP,
                open=False,
                default_target_groups=default_target_groups,
                default_action=default_action,
            )
        network.api_sg.connections.allow_from(network.alb_sg, ec2.Port.tcp(API_PORT), "from the load balancer")


class Cdn(logical_ids.Part):
    """CloudFront in front of the ALB. The ALB answers 403 unless the request carries CloudFront's secret header."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        load_balancer: LoadBalancer,
        nag: Acknowledgments,
    ) -> None:
        super().__init__(scope, construct_id)
        verify = secretsmanager.Secret(
            self,
            "OriginVerify",
            description="docproc: header value CloudFront sends and the ALB requires (X-Origin-Verify)",
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=48),
        )
        nag.ack(
            verify,
            "AwsSolutions-SMG4",
            "A shared header value between CloudFront and the ALB; rotate it by redeploying with a new secret.",
        )
        verify_value = verify.secret_value.unsafe_unwrap()  # a dynamic reference, resolved by CloudFormation
        load_balancer.listener.add_action(
            "FromCloudFront",
            priority=10,
            conditions=[elbv2.ListenerCondition.http_header("X-Origin-Verify", [verify_value])],
            action=elbv2.ListenerAction.forward([load_balancer.target_group]),
        )
        headers = {"X-Origin-Verify": verify_value}
        # with HTTPS to the ALB, the name CloudFront connects to (covered by the ALB's certificate)
        self.origin_domain_name: str | None = None
        if config.https:
            self.origin_domain_name = config.origin_domain_name or f"origin.{config.domain_name}"
            origin: cloudfront.IOrigin = origins.HttpOrigin(
                self.origin_domain_name,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
                read_timeout=Duration.seconds(60),
                custom_headers=headers,
            )
        else:
            origin = origins.LoadBalancerV2Origin(
                load_balancer.alb,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
                read_timeout=Duration.seconds(60),
                custom_headers=headers,
            )
        certificate = (
            acm.Certificate.from_certificate_arn(self, "CloudFrontCertificate", config.cloudfront_certificate_arn)
            if config.cloudfront_certificate_arn
            else None
        )
        log_bucket = s3.Bucket(
            self,
            "CloudFrontLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # CloudFront's standard logging writes with ACLs
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        nag.ack(
            log_bucket,
            "AwsSolutions-S1",
            "The destination of CloudFront's access logs; logging it into itself would loop.",
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment="docproc API",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            ),
            domain_names=[config.domain_name] if config.domain_name and certificate else None,
            certificate=certificate,
            # only with a custom certificate: *.cloudfront.net's own policy is fixed by CloudFront
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if certificate else None,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=log_bucket,
            log_file_prefix="cloudfront/",
        )
        nag.ack(
            self.distribution,
            "AwsSolutions-CFR1",
            "An API for the operator's own clients; no country restriction is wanted by default.",
        )
        nag.ack(
            self.distribution,
            "AwsSolutions-CFR2",
            "No WAF web ACL by default (its fixed monthly cost); attach one when the API is exposed publicly.",
        )
        if certificate is None:
            nag.ack(
                self.distribution,
                "AwsSolutions-CFR4",
                "Without a custom domain CloudFront serves its default *.cloudfront.net certificate, whose "
                "minimum protocol CloudFront fixes; with domainName and a certificate TLS 1.2 (2021) applies.",
            )
        if not config.https:
            nag.ack(
                self.distribution,
                "AwsSolutions-CFR5",
                "Without an ALB certificate (certificateArn) the origin is reached over HTTP; give one to switch "
                "CloudFront to HTTPS-only towards the ALB.",
            )


class Dns(logical_ids.Part):
    """Route 53 aliases in the hosted zone from context: domainName to CloudFront (and the origin name to the
    ALB), or domainName to the ALB when there is no CloudFront."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        load_balancer: LoadBalancer,
        cdn: Cdn | None,
    ) -> None:
        super().__init__(scope, construct_id)
        assert config.hosted_zone_id and config.hosted_zone_name and config.domain_name
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=config.hosted_zone_id, zone_name=config.hosted_zone_name
        )
        to_alb = route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(load_balancer.alb))
        if cdn is None:
            route53.ARecord(self, "ApiAlias", zone=zone, record_name=config.domain_name, target=to_alb)
            return
        to_cdn = route53.RecordTarget.from_alias(route53_targets.CloudFrontTarget(cdn.distribution))
        route53.ARecord(self, "ApiAlias", zone=zone, record_name=config.domain_name, target=to_cdn)
        route53.AaaaRecord(self, "ApiAliasV6", zone=zone, record_name=config.domain_name, target=to_cdn)
        if cdn.origin_domain_name:
            route53.ARecord(self, "OriginAlias", zone=zone, record_name=cdn.origin_domain_name, target=to_alb)
