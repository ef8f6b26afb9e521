# Copyright (c) mmtvmamba contributors. All rights reserved.
"""Hooks, optimizer constructors and parameter schedulers."""
