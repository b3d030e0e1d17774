"""Auxiliary look-ups: countries, currencies, languages and a country's regions.

Every path answers with and without its trailing slash; only the slashed form is documented.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from coverline.auxiliary import service
from coverline.auxiliary.schemas import (
    Country,
    CountryList,
    CurrencyList,
    LanguageList,
    RegionList,
)
from coverline.kit.http import ErrorBody

router = APIRouter(prefix="/api/auxiliary", tags=["auxiliary"])
UNKNOWN_COUNTRY: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Unknown country code."}
}


@router.get("/countries/", response_model=CountryList, summary="List countries")
@router.get("/countries", response_model=CountryList, include_in_schema=False)
def list_countries() -> CountryList:
    countries = service.list_countries()
    return CountryList(count=len(countries), results=list(countries))


@router.get(
    "/countries/{code}/",
    response_model=Country,
    summary="Get a country",
    responses=UNKNOWN_COUNTRY,
)
@router.get("/countries/{code}", response_model=Country, include_in_schema=False)
def get_country(code: str) -> Country:
    return service.get_country(code)


@router.get(
    "/countries/{code}/regions/",
    response_model=RegionList,
    summary="List a country's regions",
    description="ISO 3166-2 subdivisions. Nigerian states and the FCT also list their "
    "local government areas.",
    responses=UNKNOWN_COUNTRY,
)
@router.get("/countries/{code}/regions", response_model=RegionList, include_in_schema=False)
def list_regions(code: str) -> RegionList:
    regions = service.list_regions(code)
    return RegionList(count=len(regions), results=list(regions))


@router.get("/currencies/", response_model=CurrencyList, summary="List currencies")
@router.get("/currencies", response_model=CurrencyList, include_in_schema=False)
def list_currencies() -> CurrencyList:
    currencies = service.list_currencies()
    return CurrencyList(count=len(currencies), results=list(currencies))


@router.get("/languages/", response_model=LanguageList, summary="List languages")
@router.get("/languages", response_model=LanguageList, include_in_schema=False)
def list_languages() -> LanguageList:
    languages = service.list_languages()
    return LanguageList(count=len(languages), results=list(languages))
