"""Which network addresses web_fetch may connect to: the guard against server-side request forgery.

The model chooses the URLs web_fetch opens, and the model reads untrusted pages, so a page can ask
it to fetch `http://169.254.169.254/` (cloud credentials) or `http://localhost:8080/admin`. Every
host is therefore resolved here, every address it resolves to is classified, and the caller then
connects to exactly the address that was checked (no second DNS lookup an attacker could rebind).

Host literals are read the way browsers and `inet_aton` read them (WHATWG URL Standard, "IPv4
parser"): `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` all mean 127.0.0.1. IPv6 forms that
carry an IPv4 address (mapped, compatible, SIIT-translated, NAT64, 6to4) are judged by the IPv4
address inside them, since that is where the packets end up.
"""

from __future__ import annotations

import ipaddress
from typing import List, Optional, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

_v4 = ipaddress.IPv4Network
_v6 = ipaddress.IPv6Network

# Cloud instance-metadata services hand out credentials; they stay refused even when private
# addresses are allowed, because no one means them by "let the model fetch my intranet".
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud (classic)
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "169.254.170.23",  # AWS EKS Pod Identity agent
    "169.254.0.23",  # Tencent Cloud metadata
    "fd00:ec2::23",  # AWS EKS Pod Identity agent over IPv6
    "168.63.129.16",  # Azure WireServer (host agent; not link-local, so the private check misses it)
))

# Checked in order; the first match names the reason. IANA special-purpose registries (RFC 6890).
_BLOCKED_V4 = [
    (_v4("0.0.0.0/8"), "an unspecified ('this network') address"),
    (_v4("10.0.0.0/8"), "a private address"),
    (_v4("100.64.0.0/10"), "a shared (carrier-grade NAT, RFC 6598) address"),
    (_v4("127.0.0.0/8"), "a loopback address"),
    (_v4("169.254.0.0/16"), "a link-local address"),
    (_v4("172.16.0.0/12"), "a private address"),
    (_v4("192.0.0.0/24"), "a reserved (IETF protocol assignments) address"),
    (_v4("192.0.2.0/24"), "a reserved (documentation) address"),
    (_v4("192.88.99.0/24"), "a reserved (6to4 relay) address"),
    (_v4("192.168.0.0/16"), "a private address"),
    (_v4("198.18.0.0/15"), "a reserved (benchmarking) address"),
    (_v4("198.51.100.0/24"), "a reserved (documentation) address"),
    (_v4("203.0.113.0/24"), "a reserved (documentation) address"),
    (_v4("224.0.0.0/4"), "a multicast address"),
    (_v4("240.0.0.0/4"), "a reserved address"),  # includes 255.255.255.255 (broadcast)
]

_BLOCKED_V6 = [
    (_v6("::/128"), "an unspecified address"),
    (_v6("::1/128"), "a loopback address"),
    (_v6("64:ff9b:1::/48"), "a private (local-use NAT64, RFC 8215) address"),
    (_v6("100::/64"), "a reserved (discard-only) address"),
    (_v6("2001::/23"), "a reserved (IETF protocol assignments, incl. Teredo) address"),
    (_v6("2001:db8::/32"), "a reserved (documentation) address"),
    (_v6("3fff::/20"), "a reserved (documentation) address"),
    (_v6("fc00::/7"), "a unique-local (private) address"),
    (_v6("fe80::/10"), "a link-local address"),
    (_v6("fec0::/10"), "a site-local (private) address"),
    (_v6("ff00::/8"), "a multicast address"),
]
_GLOBAL_UNICAST_V6 = _v6("2000::/3")

# IPv6 prefixes whose low bits (or, for 6to4, bits 16-47) are an IPv4 address.
_IPV4_COMPATIBLE = _v6("::/96")  # RFC 4291, deprecated
_IPV4_MAPPED = _v6("::ffff:0:0/96")
_IPV4_TRANSLATED = _v6("::ffff:0:0:0/96")  # SIIT, RFC 2765
_NAT64 = _v6("64:ff9b::/96")  # RFC 6052
_6TO4 = _v6("2002::/16")  # RFC 3056


def embedded_ipv4(ip: ipaddress.IPv6Address):
    """The IPv4 address an IPv6 address carries and routes to, with the form's name, or None."""
    value = int(ip)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _IPV4_MAPPED:
        return low32, "IPv4-mapped"
    if ip in _IPV4_TRANSLATED:
        return low32, "IPv4-translated"
    if ip in _NAT64:
        return low32, "NAT64"
    if ip in _6TO4:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF), "6to4"
    if ip in _IPV4_COMPATIBLE and value > 1:  # :: and ::1 are themselves, not 0.0.0.0/0.0.0.1
        return low32, "IPv4-compatible"
    return None


def blocked_reason(address, allow_private: bool = False) -> Optional[str]:
    """Why web_fetch must not connect to `address` ("a loopback address"), or None if it may.

    This is the default address policy. With `allow_private`, only cloud-metadata addresses stay
    refused.
    """
    ip = as_ip(address)
    embedded = embedded_ipv4(ip) if ip.version == 6 else None
    if ip in METADATA_ADDRESSES or (embedded and embedded[0] in METADATA_ADDRESSES):
        return "a cloud metadata address"
    if allow_private:
        return None
    if embedded:
        inner, form = embedded
        reason = blocked_reason(inner)
        return f"{reason} ({inner}, in {form} form)" if reason else None
    for network, reason in (_BLOCKED_V4 if ip.version == 4 else _BLOCKED_V6):
        if ip in network:
            return reason
    if ip.version == 6 and ip not in _GLOBAL_UNICAST_V6:
        return "a reserved address"
    return None


def is_blocked_address(address, allow_private: bool = False) -> bool:
    """True if the default policy refuses `address`."""
    return blocked_reason(address, allow_private) is not None


def as_ip(address) -> IPAddress:
    """An ipaddress object from a string (IPv6 zone ids dropped) or an ipaddress object."""
    if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        ip = address
    else:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    if ip.version == 6 and getattr(ip, "scope_id", None):
        ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


def parse_host_literal(host: str) -> Optional[IPAddress]:
    """The address a URL host spells literally, or None if `host` is a name to resolve.

    `host` is urlsplit's `.hostname` (brackets removed, lower-cased). Raises ValueError for a host
    that looks numeric but is not a valid address (`1.2.3.999`), as the WHATWG parser does.
    """
    host = host.strip()
    if ":" in host:  # only IPv6 literals have colons in .hostname
        return as_ip(host.replace("%25", "%"))
    return parse_ipv4_loose(host)


def parse_ipv4_loose(host: str) -> Optional[ipaddress.IPv4Address]:
    """Read `host` as inet_aton does: 1-4 parts, each decimal, 0x-hex or 0-octal; the last part
    fills the remaining bytes. None if the last label is not numeric (so it is a host name)."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":  # a trailing dot is allowed
        parts.pop()
    if not parts or _ipv4_number(parts[-1]) is None:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if len(numbers) > 4 or any(n is None for n in numbers):
        raise ValueError(f"invalid IPv4 address: {host}")
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"invalid IPv4 address: {host}")
    value = last
    for index, n in enumerate(leading):
        value += n << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _ipv4_number(part: str) -> Optional[int]:
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part[1:], 8)
        if part.isascii() and part.isdigit():
            return int(part)
    except ValueError:
        return None
    return None


def unique(addresses: List[str]) -> List[str]:
    """`addresses` without repeats, in their first order."""
    return list(dict.fromkeys(addresses))
