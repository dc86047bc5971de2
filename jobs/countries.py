"""Country codes as producers send them: padded, in any case, alpha-3, numeric or by name.

The residency guard compares the normalized code, so `` cn``, ``CHN``, ``156`` and ``China`` all
mean ``CN``; configured blocked countries are normalized the same way. Hong Kong, Macao and Taiwan
have codes of their own and are never read as ``CN``. The Spark form of :func:`normalize` is
``jobs.stages.residency.expression.normalized_country``: both use :data:`PUNCTUATION` and
:data:`ALIASES`.
"""

from __future__ import annotations

import re

# Runs of anything but letters and digits become one space (Java and Python read it alike).
PUNCTUATION = r"[^\p{L}\p{N}]+"
_PUNCTUATION = re.compile(r"[\W_]+")

# Normalized spelling -> ISO 3166-1 alpha-2, for the countries the guard must tell apart.
ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ["CHN", "156", "CHINA", "PRC", "P R C", "PR CHINA", "P R CHINA", "PEOPLES REPUBLIC OF CHINA",
         "PEOPLE S REPUBLIC OF CHINA", "THE PEOPLE S REPUBLIC OF CHINA", "CHINA PRC",
         "MAINLAND CHINA", "CHINA MAINLAND", "CN CHINA", "ZHONGGUO", "中国", "中國", "中华人民共和国",
         "中華人民共和國", "中国大陆", "中國大陸"],
        "CN",
    ),
    **dict.fromkeys(["HKG", "344", "HONG KONG", "HONG KONG SAR", "HONGKONG", "香港"], "HK"),
    **dict.fromkeys(["MAC", "446", "MACAO", "MACAU", "MACAO SAR", "MACAU SAR", "澳门", "澳門"], "MO"),
    **dict.fromkeys(["TWN", "158", "TAIWAN", "台湾", "台灣", "臺灣"], "TW"),
}  # fmt: skip


def normalize(value: str) -> str:
    """The country code ``value`` means: trimmed, upper-cased, punctuation folded, aliases
    resolved; anything else comes back normalized but otherwise as given."""
    text = _PUNCTUATION.sub(" ", value.upper()).strip()
    return ALIASES.get(text, text)
