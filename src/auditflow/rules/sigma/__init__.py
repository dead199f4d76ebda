"""Sigma rules for AuditFlow: conversion of Sigma YAML (parsed by pySigma) into AuditFlow rules.

pySigma is an optional dependency (`auditflow[sigma]`), so this package imports it only in its
submodules; `auditflow.rules.sigma.command` can be imported without it.
"""
