#pragma once
// src/api/openapi.json, embedded at build time by src/dashboard/embed.cmake (generated
// openapi_asset.cc). One asset; routes.h's openapi_document() is the way to read it.

#include <span>

#include "dashboard/dashboard.h"

namespace ck::openapi {

using dashboard::Asset;

/// The embedded document (generated).
std::span<const Asset> assets();

}  // namespace ck::openapi
