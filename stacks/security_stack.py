"""Identity: the Cognito user pool (with admin/developer/viewer groups) and the API's app client — or, when
`settings.oidc_issuer` is set, nothing: tokens then come from that OIDC issuer.

`.token_issuer` / `.token_audience` / `.roles_claim` are what the Lambda authorizer validates against.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from stacks import acknowledge
from stacks.settings import EnvironmentSettings
from tdev.environment import Var

GROUPS = {
    "admin": "Everything, including API keys, token revocation, roles and the audit trail",
    "developer": "Submit requests into own projects, run and monitor agents, read everything else",
    "viewer": "Read and list",
    "operator": "A developer's rights, and alerts: list and acknowledge them (tdev.alerts)",
}


def token_environment(issuer: str, audience: str, roles_claim: str, token_use: str) -> dict[str, str]:
    """The variables a function that authenticates callers reads (tdev.environment's `_Authenticates`): the
    REST API's authorizer and the WebSocket API's $connect check the same tokens, so both get these."""
    return {
        Var.TDEV_JWT_ISSUER: issuer,
        Var.TDEV_JWT_AUDIENCE: audience,
        Var.TDEV_JWT_ROLES_CLAIM: roles_claim,
        Var.TDEV_JWT_TOKEN_USE: token_use,
    }


class SecurityStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, settings: EnvironmentSettings, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.user_pool: cognito.UserPool | None = None
        if settings.oidc_issuer:
            # Any OIDC issuer instead of Cognito: its JWKS is read from <issuer>/.well-known/jwks.json.
            self.token_issuer = settings.oidc_issuer
            self.token_audience = settings.oidc_audience or "tdev-api"
            self.roles_claim = settings.oidc_roles_claim
            self.token_use = settings.oidc_token_use
            CfnOutput(self, "TokenIssuer", value=self.token_issuer)
            return

        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=f"{settings.prefix}-users",
            self_sign_up_enabled=False,  # admins invite users; roles are groups
            sign_in_aliases=cognito.SignInAliases(email=True, username=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED if settings.require_mfa else cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=settings.removal_policy,
            deletion_protection=settings.deletion_protection,
        )
        for name, description in GROUPS.items():
            cognito.CfnUserPoolGroup(
                self,
                f"Group{name.title()}",
                user_pool_id=self.user_pool.user_pool_id,
                group_name=name,
                description=description,
            )
        self.client = self.user_pool.add_client(
            "ApiClient",
            user_pool_client_name=f"{settings.prefix}-api",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            access_token_validity=Duration.hours(1),  # SPEC 1.11: access tokens live 3600 s
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
            enable_token_revocation=True,
            prevent_user_existence_errors=True,
        )
        self.token_issuer = f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool.user_pool_id}"
        self.token_audience = (
            self.client.user_pool_client_id
        )  # `client_id` in access tokens, `aud` in ID tokens
        self.roles_claim = "cognito:groups"
        self.token_use = "access"  # ID tokens are refused: they name a user to a client, not to the API

        if not settings.require_mfa:
            acknowledge(
                self.user_pool,
                "AwsSolutions-COG2",
                f"MFA is optional in {settings.name} (test users, no phones); staging and prod require "
                "TOTP MFA (settings.require_mfa).",
            )
        for rule in ("AwsSolutions-COG3", "AwsSolutions-COG8"):
            acknowledge(
                self.user_pool,
                rule,
                "Cognito threat protection needs the Plus feature plan (per-user cost); brute force is "
                "limited by Cognito's own lockout, WAF and the API's rate limits; tokens are revocable.",
            )
        CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id)
        CfnOutput(self, "ApiClientId", value=self.client.user_pool_client_id)
        CfnOutput(self, "TokenIssuer", value=self.token_issuer)
