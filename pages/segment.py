import streamlit as st

st.title("Segment")
st.info("This page is being built.")
