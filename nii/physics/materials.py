"""The materials of nii's physics tables: composition, density and where each number comes from.

This module is plain data (no xraydb, no NumPy). :mod:`nii.physics.build` turns each
:class:`MaterialSpec` into element mass fractions and cross-sections; the runtime reads the
committed tables (:mod:`nii.physics.tables`) and never this module's formulas.

Compositions are given as ``(component, mass_fraction)`` pairs. A component is either the name of
another material of this list (its composition is substituted) or a chemical formula parsed by
``xraydb.chemparse`` (a single element symbol is a formula too). Fractions are renormalised to 1
at build time (a published composition that sums to 99.5 % is kept as published).

Densities are those of the material as it appears in a ray's path. For granular or fibrous goods
(sugar, flour, nuts, cotton) that is a typical packed bulk density, stated in the note, so that a
scene's path length through a sack or a suitcase of clothes is the geometric length.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATEGORIES", "MATERIALS", "MaterialSpec", "material_names"]

#: Material categories, in the order of the README table.
CATEGORIES = ("target", "confuser", "clutter", "reference", "detector")


@dataclass(frozen=True)
class MaterialSpec:
    """One material of the physics tables.

    Parameters
    ----------
    name : str
        Table key (lower case, ``_`` separated; detector scintillators keep their chemical names).
    category : str
        One of :data:`CATEGORIES`.
    density : float
        g/cm^3 as it appears in a ray's path (see the module docstring for bulk goods).
    composition : tuple of (str, float)
        ``(component, mass fraction)`` pairs; a component is a material name of this list or a
        chemical formula.
    source : str
        Where composition and density come from.
    note : str
        Anything a user should know (bulk density, assumptions).
    """

    name: str
    category: str
    density: float
    composition: tuple[tuple[str, float], ...]
    source: str
    note: str = ""


def _f(formula: str) -> tuple[tuple[str, float], ...]:
    return ((formula, 1.0),)


_ICRU44 = "ICRU Report 44 (1989) composition as tabulated by NIST (\"Bone, Cortical (ICRU-44)\"), density 1.92"
_STOICH = "stoichiometric formula"
_CRC = "density: CRC Handbook of Chemistry and Physics"

MATERIALS: tuple[MaterialSpec, ...] = (
    # --- targets -------------------------------------------------------------------------
    MaterialSpec(
        "ivory", "target", 1.85,
        (("hydroxyapatite", 0.65), ("collagen", 0.25), ("water", 0.10)),
        "dentine as 65 % hydroxyapatite, 25 % collagen, 10 % water by mass (shared/PHYSICS.md; "
        "Raubenheimer 1999, Koedoe 42:57, African elephant ivory); density 1.85 (PHYSICS.md, dentine 1.8-2.0)",
        "elephant/mammoth tusk dentine",
    ),
    MaterialSpec(
        "keratin", "target", 1.25,
        (("C", 0.505), ("H", 0.068), ("N", 0.165), ("O", 0.22), ("S", 0.037)),
        "pangolin-scale keratin C 50.5 H 6.8 N 16.5 O 22 S 3.7 wt % (shared/PHYSICS.md); density 1.25",
        "pangolin scales; published sum 99.5 % renormalised",
    ),
    MaterialSpec(
        "rhino_horn", "target", 1.30,
        (("keratin", 0.95), ("hydroxyapatite", 0.05)),
        "keratin with a few % calcium salts (Hieronymus et al. 2006, J. Morphol. 267:1172); 5 wt % "
        "hydroxyapatite chosen to give Zeff ~ 8.3 (PHYSICS.md); density 1.30",
        "mineral fraction is an assumption within the published range",
    ),
    # --- confusers -----------------------------------------------------------------------
    MaterialSpec(
        "bone_cattle", "confuser", 1.92,
        (("H", 0.034), ("C", 0.155), ("N", 0.042), ("O", 0.435), ("Na", 0.001), ("Mg", 0.002),
         ("P", 0.103), ("S", 0.003), ("Ca", 0.225)),
        f"cortical bone, {_ICRU44}",
        "mammalian cortical bone",
    ),
    MaterialSpec("shell", "confuser", 2.71, _f("CaCO3"), f"{_STOICH} (calcite); {_CRC}", "mollusc shell"),
    MaterialSpec("pvc", "confuser", 1.40, _f("C2H3Cl"), f"{_STOICH}; {_CRC}", "rigid PVC, no filler"),
    MaterialSpec("aluminium", "confuser", 2.699, _f("Al"), f"element; {_CRC}"),
    MaterialSpec(
        "glass", "confuser", 2.50,
        (("SiO2", 0.73), ("Na2O", 0.14), ("CaO", 0.09), ("MgO", 0.04)),
        "soda-lime float/container glass, typical oxide composition (Shelby, Introduction to Glass "
        "Science and Technology, 2005); density 2.5",
        "PHYSICS.md's Zeff 11.6 is fused silica; soda-lime is ~12.3",
    ),
    MaterialSpec("salt", "confuser", 2.16, _f("NaCl"), f"{_STOICH}; {_CRC}", "rock salt / table salt crystal"),
    MaterialSpec(
        "fake_ivory", "confuser", 1.70,
        (("C10H8O4", 0.5), ("CaCO3", 0.5)),
        "cast polyester resin (PET-like repeat unit C10H8O4) with 50 wt % CaCO3 filler; density from "
        "the mixture rule with 1.2 resin / 2.71 filler, rounded",
        "resin 'fake ivory' / ivorine; filler fraction assumed",
    ),
    MaterialSpec(
        "ceramic", "confuser", 2.40,
        (("SiO2", 0.66), ("Al2O3", 0.28), ("K2O", 0.04), ("Na2O", 0.01), ("Fe2O3", 0.01)),
        "vitreous china / porcelain, typical oxide composition (Carty & Senapati 1998, J. Am. Ceram. "
        "Soc. 81:3); density 2.4",
    ),
    # --- clutter -------------------------------------------------------------------------
    MaterialSpec("water", "clutter", 1.0, _f("H2O"), _STOICH),
    MaterialSpec("cellulose", "clutter", 1.50, _f("C6H10O5"), f"{_STOICH}; crystalline cellulose 1.5"),
    MaterialSpec("wood", "clutter", 0.60, (("cellulose", 1.0),), "cellulose composition; typical wood density 0.6",
                 "lignin ignored (same C/H/O to within a few %)"),
    MaterialSpec("paper", "clutter", 0.80, (("cellulose", 1.0),), "cellulose composition; office paper ~0.8"),
    MaterialSpec("cardboard", "clutter", 0.70, (("cellulose", 1.0),), "cellulose composition; solid board 0.7",
                 "use the summed board thickness of corrugated cardboard"),
    MaterialSpec("polyethylene", "clutter", 0.95, _f("C2H4"), f"{_STOICH}; HDPE 0.95"),
    MaterialSpec("pmma", "clutter", 1.19, _f("C5H8O2"), f"{_STOICH}; {_CRC}"),
    MaterialSpec("nylon", "clutter", 1.14, _f("C12H22N2O2"), f"nylon 6,6 {_STOICH}; {_CRC}"),
    MaterialSpec("cotton", "clutter", 0.50, (("cellulose", 1.0),), "cellulose composition",
                 "packed textiles (clothing in a suitcase), bulk density 0.5; fibre itself 1.54"),
    MaterialSpec("sugar", "clutter", 0.85, _f("C12H22O11"), f"sucrose {_STOICH}", "granulated, bulk density 0.85; crystal 1.59"),
    MaterialSpec(
        "flour", "clutter", 0.60,
        (("C6H10O5", 0.75), ("protein", 0.11), ("water", 0.13), ("NaCl", 0.01)),
        "wheat flour: ~75 % starch, ~11 % protein, ~13 % water (USDA FoodData Central), ash as NaCl",
        "bulk density 0.6",
    ),
    MaterialSpec(
        "nuts", "clutter", 0.65,
        (("C57H104O6", 0.50), ("protein", 0.22), ("C6H10O5", 0.23), ("water", 0.05)),
        "nut kernels: ~50 % fat (as triolein), ~22 % protein, ~23 % carbohydrate, ~5 % water "
        "(USDA FoodData Central, almonds)",
        "bulk density 0.65 (loose kernels in a sack)",
    ),
    MaterialSpec("rubber", "clutter", 0.92, _f("C5H8"), f"natural rubber (cis-polyisoprene) {_STOICH}; {_CRC}",
                 "unfilled; tyre rubber with carbon black is denser"),
    MaterialSpec("steel", "clutter", 7.85, (("Fe", 0.982), ("Mn", 0.008), ("C", 0.002), ("Si", 0.003), ("Cr", 0.005)),
                 "mild carbon steel (AISI 1020-like); density 7.85"),
    MaterialSpec("copper", "clutter", 8.96, _f("Cu"), f"element; {_CRC}"),
    MaterialSpec("lead", "clutter", 11.35, _f("Pb"), f"element; {_CRC}"),
    # --- reference / component materials (step wedges, mixtures) -------------------------------
    MaterialSpec("pom", "reference", 1.41, _f("CH2O"), f"polyoxymethylene {_STOICH}; {_CRC}", "step-wedge material"),
    MaterialSpec("iron", "reference", 7.874, _f("Fe"), f"element; {_CRC}", "step-wedge material"),
    MaterialSpec("hydroxyapatite", "reference", 3.16, _f("Ca5(PO4)3OH"), f"{_STOICH}; {_CRC}", "mineral of bone and dentine"),
    MaterialSpec(
        "collagen", "reference", 1.35, _f("C12H17N3O4"),
        "residue formula of the collagen (Gly-Pro-Hyp)n repeat; density 1.35 (dry collagen)",
        "organic matrix of bone and dentine",
    ),
    MaterialSpec(
        "protein", "reference", 1.35,
        (("C", 0.530), ("H", 0.070), ("N", 0.160), ("O", 0.230), ("S", 0.010)),
        "average protein composition (C 53 H 7 N 16 O 23 S 1 wt %, textbook biochemistry)",
        "component of food mixtures",
    ),
    # --- detector materials --------------------------------------------------------------
    MaterialSpec("CsI", "detector", 4.51, _f("CsI"), f"{_STOICH}; {_CRC}", "CsI(Tl) scintillator (Tl dopant ignored)"),
    MaterialSpec("GOS", "detector", 7.34, _f("Gd2O2S"), f"{_STOICH}; Gd2O2S:Tb/Pr ceramic 7.34",
                 "gadolinium oxysulphide scintillator (dopant ignored)"),
)


def material_names() -> tuple[str, ...]:
    """Names of all materials of :data:`MATERIALS`, in table order."""
    return tuple(m.name for m in MATERIALS)
