"""Step functions of the map npi-check-digit (docs/maps.md, "The escape hatch: call")."""


def npi_is_valid(npi: str) -> bool:
    """An NPI is ten digits whose last is the Luhn check digit of the other nine behind 80840."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed("80840" + npi[:9])):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit - 9 if digit > 9 else digit
    return (10 - total % 10) % 10 == int(npi[9])


def hold_bad_npi(ctx):
    """Hold the message when a prescription's prescriber NPI is not a valid NPI."""
    for prescription in ctx.of_kind("prescription"):
        npi = prescription.prescriber.npi if prescription.prescriber else None
        if npi and not npi_is_valid(npi):
            ctx.hold("the prescriber NPI fails its check digit")
