from collections.abc import AsyncIterator

import httpx
import naija_data
import pycountry
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from coverline.auxiliary import service
from coverline.auxiliary.api import router
from coverline.auxiliary.schemas import Country, Currency, Language
from coverline.kit.errors import CoverlineError, NotFound

BASE = "/api/auxiliary"

NIGERIA = {
    "code": "NG",
    "alpha3": "NGA",
    "name": "Nigeria",
    "official_name": "Federal Republic of Nigeria",
    "numeric": "566",
    "currency": "NGN",
    "calling_code": "+234",
}
NAIRA = {"code": "NGN", "name": "Naira", "numeric": "566", "minor_units": 2, "symbol": "₦"}
LAGOS_LGAS = [
    "Agege",
    "Ajeromi/Ifelodun",
    "Alimosho",
    "Amuwo-Odofin",
    "Apapa",
    "Badagry",
    "Epe",
    "Eti-Osa",
    "Ibeju/Lekki",
    "Ifako-Ijaye",
    "Ikeja",
    "Ikorodu",
    "Kosofe",
    "Lagos Island",
    "Lagos Mainland",
    "Mushin",
    "Ojo",
    "Oshodi/Isolo",
    "Somolu",
    "Surulere",
]
UNKNOWN_COUNTRY = {"type": "not_found", "message": "Unknown country code 'XX'.", "errors": {}}


# Service


def test_country_carries_iso_codes_currency_and_calling_code() -> None:
    assert service.get_country("NG") == Country(**NIGERIA)


def test_country_code_is_case_insensitive() -> None:
    assert service.get_country("ng") is service.get_country("NG")


def test_unknown_country_is_not_found() -> None:
    with pytest.raises(NotFound) as raised:
        service.get_country("xx")
    assert raised.value.message == "Unknown country code 'XX'."
    with pytest.raises(NotFound):
        service.list_regions("XX")


def test_countries_are_every_iso_3166_1_country_sorted_by_code() -> None:
    codes = [country.code for country in service.list_countries()]
    assert codes == sorted(country.alpha_2 for country in pycountry.countries)
    assert len(codes) == len(set(codes))


def test_currency_minor_units_and_symbols() -> None:
    currencies = {currency.code: currency for currency in service.list_currencies()}
    assert currencies["NGN"] == Currency(**NAIRA)
    assert currencies["JPY"].minor_units == 0
    assert currencies["BHD"].minor_units == 3
    assert currencies["EUR"].symbol == "€"
    assert currencies["GBP"].symbol == "£"
    assert list(currencies) == sorted(currencies)


def test_languages_are_iso_639_1_only() -> None:
    languages = service.list_languages()
    assert Language(code="en", name="English") in languages
    assert all(len(language.code) == 2 for language in languages)
    assert [language.code for language in languages] == sorted(
        language.alpha_2 for language in pycountry.languages if hasattr(language, "alpha_2")
    )


def test_nigeria_has_36_states_and_the_fct_with_774_lgas() -> None:
    regions = service.list_regions("NG")
    assert len(regions) == 37
    assert [region.code for region in regions] == sorted(region.code for region in regions)
    assert sum(region.type == "State" for region in regions) == 36
    fct = next(region for region in regions if region.code == "NG-FC")
    assert fct.type == "Capital territory"
    assert fct.local_government_areas == (
        "Abaji",
        "Abuja Municipal",
        "Bwari",
        "Gwagwalada",
        "Kuje",
        "Kwali",
    )
    assert all(region.local_government_areas for region in regions)
    assert sum(len(region.local_government_areas or ()) for region in regions) == 774


def test_lagos_has_its_20_lgas() -> None:
    lagos = next(region for region in service.list_regions("ng") if region.code == "NG-LA")
    assert lagos.name == "Lagos"
    assert lagos.type == "State"
    assert lagos.parent_code is None
    assert lagos.local_government_areas == tuple(LAGOS_LGAS)


def test_lga_package_states_match_pycountry_subdivisions() -> None:
    subdivisions = {
        subdivision.code: subdivision.name
        for subdivision in pycountry.subdivisions.get(country_code="NG")
    }
    states = {state.iso_code: state.name for state in naija_data.states()}
    assert states.keys() == subdivisions.keys()
    # pycountry calls the FCT "Abuja Federal Capital Territory", the package
    # "Federal Capital Territory"; every other name is the same.
    assert all(name in subdivisions[code] for code, name in states.items())


def test_other_countries_have_regions_without_lgas() -> None:
    regions = {region.code: region for region in service.list_regions("GB")}
    assert regions["GB-ENG"].name == "England"
    assert regions["GB-ENG"].parent_code is None
    assert regions["GB-LIV"].parent_code == "GB-ENG"
    assert all(region.local_government_areas is None for region in regions.values())
    assert "local_government_areas" not in regions["GB-ENG"].model_dump()


# HTTP


@pytest.fixture(scope="module")
def app() -> FastAPI:
    app = FastAPI()
    app.include_router(router)

    @app.exception_handler(CoverlineError)
    async def render(_: Request, exc: CoverlineError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("path", ["/countries/", "/countries"])
async def test_list_countries(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(BASE + path)
    assert response.status_code == 200
    body = response.json()
    assert body.keys() == {"count", "results"}
    assert body["count"] == len(body["results"]) == len(pycountry.countries)
    assert NIGERIA in body["results"]


@pytest.mark.parametrize("path", ["/countries/NG/", "/countries/ng", "/countries/Ng/"])
async def test_get_country(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(BASE + path)
    assert response.status_code == 200
    assert response.json() == NIGERIA


@pytest.mark.parametrize("path", ["/countries/xx/", "/countries/XX", "/countries/xx/regions/"])
async def test_unknown_country_is_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(BASE + path)
    assert response.status_code == 404
    assert response.json() == UNKNOWN_COUNTRY


@pytest.mark.parametrize("path", ["/countries/ng/regions/", "/countries/NG/regions"])
async def test_nigerian_regions(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(BASE + path)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["results"]) == 37
    assert {
        "code": "NG-LA",
        "name": "Lagos",
        "type": "State",
        "parent_code": None,
        "local_government_areas": LAGOS_LGAS,
    } in body["results"]
    assert sum(len(region["local_government_areas"]) for region in body["results"]) == 774


async def test_regions_elsewhere_leave_out_lgas(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/countries/gb/regions/")
    assert response.status_code == 200
    results = response.json()["results"]
    assert {"code": "GB-ENG", "name": "England", "type": "Country", "parent_code": None} in results
    assert all("local_government_areas" not in region for region in results)


@pytest.mark.parametrize("path", ["/currencies/", "/currencies"])
async def test_list_currencies(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(BASE + path)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["results"]) == len(pycountry.currencies)
    assert NAIRA in body["results"]


@pytest.mark.parametrize("path", ["/languages/", "/languages"])
async def test_list_languages(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(BASE + path)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == len(body["results"])
    assert {"code": "en", "name": "English"} in body["results"]


def test_openapi_documents_only_the_slashed_paths(app: FastAPI) -> None:
    schema = app.openapi()
    assert sorted(schema["paths"]) == [
        f"{BASE}/countries/",
        f"{BASE}/countries/{{code}}/",
        f"{BASE}/countries/{{code}}/regions/",
        f"{BASE}/currencies/",
        f"{BASE}/languages/",
    ]
    region = schema["components"]["schemas"]["Region"]
    assert region["properties"]["local_government_areas"]["type"] == "array"
    assert "local_government_areas" not in region["required"]
