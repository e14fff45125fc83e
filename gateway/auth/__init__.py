"""Authentication and authorization (issue 13): API keys (``api_keys.py``), the user's
``langgraph_sdk.Auth`` object (``custom.py``) and its authorization handlers
(``authorize.py``)."""

from gateway.auth.api_keys import PUBLIC_PATHS, ApiKeyAuth, is_public
from gateway.auth.authorize import auth_configured, authorize
from gateway.auth.custom import AuthUser, CustomAuth, CustomAuthMiddleware, current_user

__all__ = ["PUBLIC_PATHS", "ApiKeyAuth", "AuthUser", "CustomAuth", "CustomAuthMiddleware",
           "auth_configured", "authorize", "current_user", "is_public"]
