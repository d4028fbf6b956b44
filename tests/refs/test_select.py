

def test_ipac_seeing_in_pixels_is_read_in_arcsec() -> None:
    from astropy.io import fits

    from zsds.core.instrument import PIXEL_SCALE
    from zsds.refs.select import candidates_from_headers

    ipac, ours = fits.Header(), fits.Header()
    ipac["SEEING"] = (1.241, "[pixels] Seeing FWHM")
    ours["SEEING"] = (1.9, "PSF FWHM (arcsec)")
    c = candidates_from_headers([ipac, ours])
    assert abs(c["seeing"][0] - 1.241 * PIXEL_SCALE) < 1e-9 and c["seeing"][1] == 1.9
