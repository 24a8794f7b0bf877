"""ORM models; importing this package registers every table on `Base.metadata`."""

from app.models.base import Base
from app.models.session import LoginThrottle, SessionCacheBacklog, UserSession
from app.models.signing_key import SigningKey
from app.models.user import User

__all__ = ["Base", "LoginThrottle", "SessionCacheBacklog", "SigningKey", "User", "UserSession"]
