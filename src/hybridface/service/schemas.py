"""Pydantic request/response models of the REST service (they make the OpenAPI document)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class IdentitySummary(BaseModel):
    name: str
    templates: int


class IdentityList(BaseModel):
    identities: list[IdentitySummary]
    templates: int


class IdentityDetail(BaseModel):
    name: str
    templates: int
    template_ids: list[int]


class EnrolResult(BaseModel):
    identity: str
    template_ids: list[int] = Field(description="ids of the templates added")
    duplicates: int = Field(description="images already enrolled for this identity (ignored)")
    templates: int = Field(description="templates the identity holds after this enrolment")


class RenameBody(BaseModel):
    name: str = Field(min_length=1, max_length=128, description="the new identity name")


class Removed(BaseModel):
    identity: str
    templates_removed: int


class Candidate(BaseModel):
    identity: str
    distance: float


class FaceResult(BaseModel):
    file: int = Field(description="index of the uploaded file")
    filename: str
    face: int = Field(description="index of the face within the file")
    box: list[int] | None = Field(description="x, y, w, h of the face in the image")
    identity: str | None = Field(description="best identity, or null when unknown")
    distance: float | None
    unknown: bool
    candidates: list[Candidate]


class IdentifyResult(BaseModel):
    results: list[FaceResult]
    threshold: float | None
    strategy: str


class VerifyResult(BaseModel):
    same: bool
    distance: float
    threshold: float


class Health(BaseModel):
    status: str
    version: str
    identities: int | None = None  # only for a caller with a valid key
    templates: int | None = None
