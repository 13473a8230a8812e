import marshmallow as ma
from marshmallow import fields, validate

from market.accounts.models import Language, Role, User
from market.api import StrictSchema


class RegisterSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=10, max=200))
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    roles = fields.List(fields.Enum(Role, by_value=True), required=True, validate=validate.Length(min=1, max=2))
    phone = fields.String(validate=validate.Regexp(r"^\+?[0-9][0-9 -]{5,30}$"), load_default=None)
    language = fields.Enum(Language, by_value=True, load_default=Language.ZH)


class RegistrationAcceptedSchema(ma.Schema):
    email = fields.String(required=True, metadata={"description": "The address, as the account keeps it."})
    detail = fields.String(required=True)


class ConfirmationSchema(StrictSchema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=500))


class UserSchema(ma.Schema):
    id = fields.Integer(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    phone = fields.String(allow_none=True)
    language = fields.Enum(Language, by_value=True, required=True)
    roles = fields.Method("dump_roles", required=True, metadata={"type": "array", "items": {"type": "string"}})
    created_at = fields.DateTime(required=True)

    def dump_roles(self, user: User) -> list[str]:
        return sorted(role.value for role in user.role_names)


class LoginSchema(StrictSchema):
    email = fields.Email(required=True)
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=200))
    name = fields.String(load_default="api", validate=validate.Length(min=1, max=80))
    ttl_days = fields.Integer(validate=validate.Range(min=1, max=365))


class TokenSchema(ma.Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    prefix = fields.String(required=True, metadata={"description": "The first characters, to tell tokens apart."})
    created_at = fields.DateTime(required=True)
    expires_at = fields.DateTime(required=True)
    last_used_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)


class IssuedTokenSchema(TokenSchema):
    token = fields.String(required=True, metadata={"description": "The bearer token. Shown only this once."})
