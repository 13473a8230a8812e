import re
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from market.accounts.models import Language, Role, User
from market.api import StrictSchema

# E.164: a +, a country code that does not start with 0, at most 15 digits.
E164 = re.compile(r"\+[1-9][0-9]{6,14}")
PHONE_SEPARATORS = re.compile(r"[ -]")


class Phone(fields.String):
    """A mobile number for SMS in international form. Spaces and hyphens
    between digits are allowed and dropped (`+86 139-0000-0001` is kept
    as `+8613900000001`), so the SMS gateway gets one spelling."""

    def __init__(self, **kwargs: Any) -> None:
        description = "International (E.164): + and 7 to 15 digits; spaces and hyphens between them are dropped."
        extra = kwargs.pop("metadata", {})
        description = f"{description} {extra.get('description', '')}".strip()
        metadata = {"example": "+8613900000001", **extra, "description": description}
        super().__init__(validate=validate.Length(max=32), metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        number = PHONE_SEPARATORS.sub("", text)
        if len(text) > 32 or not E164.fullmatch(number):
            raise ma.ValidationError("Not a phone number in international form: + then 7 to 15 digits.")
        return number


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


class RegisterSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=10, max=200))
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    roles = fields.List(fields.Enum(Role, by_value=True), required=True, validate=validate.Length(min=1, max=2))
    phone = Phone(load_default=None)
    language = fields.Enum(Language, by_value=True, load_default=Language.ZH)


class ProfileUpdateSchema(StrictSchema):
    """The fields of your own account you may change; those left out stay."""

    name = fields.String(validate=[validate.Length(min=1, max=120), _not_blank])
    phone = Phone(allow_none=True, metadata={"description": "null removes the number (no more SMS)."})
    language = fields.Enum(Language, by_value=True, metadata={"description": "Of every email and SMS from now on."})


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
    phone_verified = fields.Boolean(
        required=True,
        metadata={
            "description": "Whether the number is proven this account's (station staff opened the account with it, "
            "or a code texted to it claimed the account); only a proven number is matched to a villager's orders."
        },
    )
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
